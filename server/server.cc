#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <filesystem>
#include <map>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/stable_hash.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "server/async_unary.h"
#include "server/health_service.h"
#include "server/model_module.h"
#include "server/model_registry.h"
#include "server/own_parsing.h"
#include "server/read_barrier.h"
#include "server/reflection_service.h"
#include "server/status_util.h"
#include "server/validation.h"

namespace mercato::server {
namespace {

constexpr int kStreamChunk = 512;
constexpr int kMaxListedRejections = 1000;

// Appends `events` (at positions `index` of the call) and adds the outcome
// to `summary`, with notes on the accepted ones.
absl::Status Commit(Runtime& rt, const std::vector<core::Event>& events,
                    const std::vector<uint64_t>& index, v1::PublishSummary* summary) {
  if (events.empty()) {
    summary->set_last_sequence(rt.log_head());
    return absl::OkStatus();
  }
  // Taken before the append, so that the notes tell the state the events
  // arrive at, never one that already includes them.
  const std::shared_ptr<const core::Snapshot> snap = rt.learner().snapshot();
  absl::StatusOr<storage::AppendResult> r = rt.writer().Append(events);
  if (!r.ok()) return r.status();
  summary->set_accepted(summary->accepted() + r->accepted);
  summary->set_duplicates(summary->duplicates() + r->duplicates);
  summary->set_last_sequence(r->last_sequence);
  for (size_t i = 0; i < events.size() && summary->notes_size() < kMaxListedRejections; ++i) {
    if (r->sequences[i] == 0) continue;
    for (const core::PublishedModel& m : snap->models) {
      if (std::string note = m.view->Note(events[i]); !note.empty()) {
        v1::EventNote* n = summary->add_notes();
        n->set_index(index[i]);
        n->set_event_id(events[i].event_id);
        n->set_note(std::move(note));
      }
    }
  }
  return absl::OkStatus();
}

class IngestService final : public OwnParsing<v1::Ingest::Service> {
 public:
  IngestService(Runtime* rt, Metrics* metrics) : rt_(rt), metrics_(metrics) {
    ParseUnary(v1::Ingest::service_full_name(), "PublishBatch", &IngestService::PublishBatch);
    ParseClientStream(v1::Ingest::service_full_name(), "Publish", &IngestService::Publish);
  }

  grpc::Status PublishBatch(grpc::ServerContext*, const v1::EventBatch* req,
                            v1::PublishSummary* resp) override {
    absl::Status s = CheckCount("events", req->events_size(), 1, kMaxBatchEvents);
    if (s.ok()) s = CheckTenant("tenant", req->tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    std::vector<core::Event> events;
    std::vector<uint64_t> index;
    events.reserve(req->events_size());
    for (int i = 0; i < req->events_size(); ++i) {
      absl::StatusOr<core::Event> e = ToCoreEvent(req->events(i), absl::StrCat("events[", i, "]"));
      if (!e.ok()) return ToGrpcStatus(e.status());
      events.push_back(*std::move(e));
      index.push_back(i);
    }
    const grpc::Status status = ToGrpcStatus(Commit(*rt_, events, index, resp));
    Count(*resp);
    return status;
  }

  // Reads the stream as bytes, so that a message that is no Event is
  // counted and listed among the rejections instead of ending the stream.
  grpc::Status Publish(grpc::ServerContext*, grpc::ServerReader<grpc::ByteBuffer>* reader,
                       v1::PublishSummary* resp) {
    std::vector<core::Event> chunk;
    std::vector<uint64_t> chunk_index;
    grpc::ByteBuffer bytes;
    v1::Event in;
    for (uint64_t index = 0; reader->Read(&bytes); ++index) {
      const std::string field = absl::StrCat("event[", index, "]");
      const absl::Status parsed = ParseRequest(bytes, field, &in);
      absl::StatusOr<core::Event> e = parsed.ok() ? ToCoreEvent(in, field) : parsed;
      if (!e.ok()) {
        resp->set_rejected(resp->rejected() + 1);
        if (resp->rejections_size() < kMaxListedRejections) {
          v1::RejectedEvent* r = resp->add_rejections();
          r->set_index(index);
          r->set_event_id(in.event_id().substr(0, kMaxIdBytes));
          r->set_reason(absl::StrCat(e.status().message()));
        }
        continue;
      }
      chunk.push_back(*std::move(e));
      chunk_index.push_back(index);
      if (chunk.size() >= kStreamChunk) {
        if (absl::Status s = Commit(*rt_, chunk, chunk_index, resp); !s.ok()) {
          return ToGrpcStatus(s);
        }
        chunk.clear();
        chunk_index.clear();
      }
    }
    const grpc::Status status = ToGrpcStatus(Commit(*rt_, chunk, chunk_index, resp));
    Count(*resp);
    return status;
  }

 private:
  void Count(const v1::PublishSummary& s) {
    if (metrics_) metrics_->CountEvents(s.accepted(), s.duplicates(), s.rejected());
  }

  Runtime* rt_;
  Metrics* metrics_;
};

class CatalogService final : public OwnParsing<v1::Catalog::Service> {
 public:
  explicit CatalogService(Runtime* rt) : rt_(rt) {
    ParseUnary(v1::Catalog::service_full_name(), "UpsertItems", &CatalogService::UpsertItems);
    ParseUnary(v1::Catalog::service_full_name(), "GetItem", &CatalogService::GetItem);
    ParseUnary(v1::Catalog::service_full_name(), "DeleteItem", &CatalogService::DeleteItem);
  }

  grpc::Status UpsertItems(grpc::ServerContext*, const v1::UpsertItemsRequest* req,
                           v1::UpsertItemsResponse* resp) override {
    absl::Status s = CheckCount("items", req->items_size(), 1, kMaxBatchItems);
    if (s.ok()) s = CheckTenant("tenant", req->tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    std::vector<core::Item> items;
    for (int i = 0; i < req->items_size(); ++i) {
      absl::StatusOr<core::Item> item = ToCoreItem(req->items(i), absl::StrCat("items[", i, "]"));
      if (!item.ok()) return ToGrpcStatus(item.status());
      items.push_back(*std::move(item));
    }
    if (s = rt_->writer().PutItems(items); !s.ok()) return ToGrpcStatus(s);
    resp->set_upserted(items.size());
    return grpc::Status::OK;
  }

  grpc::Status GetItem(grpc::ServerContext*, const v1::GetItemRequest* req,
                       v1::Item* resp) override {
    absl::Status s = CheckId("item_id", req->item_id());
    if (s.ok()) s = CheckTenant("tenant", req->tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    absl::StatusOr<core::Item> item = rt_->store().GetItem(req->item_id());
    if (!item.ok()) return ToGrpcStatus(item.status());
    ToProtoItem(*item, resp);
    return grpc::Status::OK;
  }

  grpc::Status DeleteItem(grpc::ServerContext*, const v1::DeleteItemRequest* req,
                          v1::DeleteItemResponse* resp) override {
    absl::Status s = CheckId("item_id", req->item_id());
    if (s.ok()) s = CheckTenant("tenant", req->tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    absl::StatusOr<bool> deleted = rt_->writer().DeleteItem(req->item_id());
    if (!deleted.ok()) return ToGrpcStatus(deleted.status());
    resp->set_deleted(*deleted);
    return grpc::Status::OK;
  }

 private:
  Runtime* rt_;
};

class AdminService final : public OwnParsing<v1::Admin::Service> {
 public:
  AdminService(Runtime* rt, std::function<bool()> serving) : rt_(rt), serving_(std::move(serving)) {
    ParseUnary(v1::Admin::service_full_name(), "ModelStatus", &AdminService::ModelStatus);
    ParseUnary(v1::Admin::service_full_name(), "Checkpoint", &AdminService::Checkpoint);
    ParseUnary(v1::Admin::service_full_name(), "Retrain", &AdminService::Retrain);
    ParseUnary(v1::Admin::service_full_name(), "DeleteUser", &AdminService::DeleteUser);
    ParseUnary(v1::Admin::service_full_name(), "ReadEvents", &AdminService::ReadEvents);
    ParseUnary(v1::Admin::service_full_name(), "ReadAudit", &AdminService::ReadAudit);
    ParseUnary(v1::Admin::service_full_name(), "Backup", &AdminService::Backup);
  }

  grpc::Status ModelStatus(grpc::ServerContext*, const v1::ModelStatusRequest*,
                           v1::ModelStatusResponse* resp) override {
    std::shared_ptr<const core::Snapshot> snap = rt_->learner().snapshot();
    resp->set_ready(rt_->ready());
    resp->set_log_sequence(rt_->store().LastSequence());
    resp->set_applied_sequence(snap->served_sequence());
    resp->set_lag_events(rt_->lag_events());
    resp->set_serving(serving_());
    if (const storage::RedisLog* shared = rt_->shared_log()) {
      resp->set_shared_log_sequence(shared->head());
      resp->set_shared_log_connected(shared->connected());
      resp->set_shared_log_error(std::string(shared->mirror_status().message()));
    }
    // While events wait, the served snapshot is at most this old.
    resp->set_lag_seconds(resp->lag_events() == 0
                              ? 0
                              : (core::Clock::Real()->NowMs() - snap->published_at_ms) / 1000.0);
    resp->set_snapshot_version(snap->version);
    for (const core::PublishedModel& m : snap->models) {
      v1::ModelInfo* info = resp->add_models();
      info->set_name(m.name);
      info->set_version(m.version);
      info->set_applied_sequence(m.applied_sequence);
      info->set_published_at_ms(m.published_at_ms);
      for (const auto& [name, n] : m.view->Counts()) (*info->mutable_counts())[name] = n;
      (*info->mutable_counts())["waiting_events"] = m.waiting_events;
      (*info->mutable_counts())["applied_events"] = m.applied_events;
      (*info->mutable_counts())["apply_ns"] = m.apply_ns;
      for (const auto& [name, x] : m.view->Gauges()) (*info->mutable_gauges())[name] = x;
      for (const core::FitTrial& t : m.view->Trials()) {
        v1::FitTrial* out = info->add_trials();
        for (const auto& [name, x] : t.parameters) (*out->mutable_parameters())[name] = x;
        for (const auto& [name, x] : t.metrics) (*out->mutable_metrics())[name] = x;
        out->set_adopted(t.adopted);
      }
      if (const std::optional<core::RetrainInfo> r = m.view->LastRetrain()) {
        info->set_last_retrain_ms(r->finished_ms);
      }
      if (const std::optional<core::RunningRetrain> r = m.view->Running()) {
        info->set_retrain_running(true);
        info->set_retrain_started_ms(r->started_ms);
        info->set_retrain_started_sequence(r->started_sequence);
      }
    }
    // What checkpoints write, so a function of its sequence alone.
    const std::shared_ptr<const core::Snapshot> settled = rt_->learner().settled_snapshot();
    for (v1::ModelInfo& info : *resp->mutable_models()) {
      const core::PublishedModel* m = settled ? settled->Find(info.name()) : nullptr;
      if (m == nullptr) continue;
      info.set_digest(Digest(*m));
      info.set_digest_sequence(settled->applied_sequence);
    }
    const core::CheckpointInfo cp = rt_->checkpointer().last();
    resp->set_last_checkpoint_sequence(cp.sequence);
    resp->set_last_checkpoint_ms(cp.written_at_ms);
    absl::StatusOr<std::vector<uint64_t>> erasures = rt_->store().PendingErasures();
    if (!erasures.ok()) return ToGrpcStatus(erasures.status());
    resp->set_erasures_pending(erasures->size());
    resp->set_erasure_compaction_due(rt_->store().CompactionDue());
    return grpc::Status::OK;
  }

  grpc::Status Checkpoint(grpc::ServerContext*, const v1::CheckpointRequest*,
                          v1::CheckpointResponse* resp) override {
    if (!rt_->ready()) return NotReady();
    absl::StatusOr<core::CheckpointInfo> info = rt_->checkpointer().CheckpointNow();
    if (!info.ok()) return ToGrpcStatus(info.status());
    resp->set_sequence(info->sequence);
    resp->set_bytes(info->bytes);
    resp->set_seconds(info->seconds);
    return grpc::Status::OK;
  }

  grpc::Status Retrain(grpc::ServerContext*, const v1::RetrainRequest* req,
                       v1::RetrainResponse* resp) override {
    if (!rt_->ready()) return NotReady();
    if (absl::Status s = CheckOptionalId("model", req->model()); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = rt_->learner().CheckRetrain(req->model()); !s.ok()) {
      return ToGrpcStatus(s);
    }
    // Through the log, so that the fit starts at the same position on every
    // replay of it.
    core::Event request;
    request.type = core::EventType::kRetrain;
    request.payload = req->model();
    request.timestamp_ms = core::Clock::Real()->NowMs();
    request.event_id =
        absl::StrCat("retrain/", req->model(), "/", absl::ToUnixMicros(absl::Now()));
    absl::StatusOr<storage::AppendResult> r = rt_->writer().Append({request});
    if (!r.ok()) return ToGrpcStatus(r.status());
    resp->set_sequence(r->sequences[0]);
    resp->set_message(absl::StrCat("retrain of ",
                                   req->model().empty() ? "every model" : req->model(),
                                   " requested at sequence ", r->sequences[0],
                                   "; ModelStatus shows the new version when done"));
    return grpc::Status::OK;
  }

  grpc::Status DeleteUser(grpc::ServerContext*, const v1::DeleteUserRequest* req,
                          v1::DeleteUserResponse* resp) override {
    if (absl::Status s = CheckId("user_id", req->user_id()); !s.ok()) return ToGrpcStatus(s);
    core::Event erase;
    erase.type = core::EventType::kUserDelete;
    erase.user_id = req->user_id();
    erase.timestamp_ms = core::Clock::Real()->NowMs();
    // No event id: it would stay in the store after the erasure, and every
    // call is an erasure of its own.
    absl::StatusOr<storage::AppendResult> r = rt_->writer().Append({erase});
    if (!r.ok()) return ToGrpcStatus(r.status());
    resp->set_sequence(r->sequences[0]);
    rt_->eraser().Notify();
    return grpc::Status::OK;
  }

  grpc::Status ReadEvents(grpc::ServerContext*, const v1::ReadEventsRequest* req,
                          v1::ReadEventsResponse* resp) override {
    absl::Status s = CheckCount("limit", req->limit(), 1, kMaxReadEvents);
    if (s.ok())
      s = CheckCount("from_sequence",
                     static_cast<int64_t>(std::min<uint64_t>(req->from_sequence(), INT64_MAX)), 1,
                     INT64_MAX);
    if (!s.ok()) return ToGrpcStatus(s);
    std::vector<core::Event> events;
    if (s = rt_->store().Read(req->from_sequence(), req->limit(), &events); !s.ok()) {
      return ToGrpcStatus(s);
    }
    for (const core::Event& e : events) {
      v1::LoggedEvent* out = resp->add_events();
      out->set_sequence(e.sequence);
      ToProtoEvent(e, out->mutable_event());
    }
    const uint64_t next = events.empty() ? 0 : events.back().sequence + 1;
    resp->set_next_sequence(next > rt_->store().LastSequence() ? 0 : next);
    return grpc::Status::OK;
  }

  grpc::Status ReadAudit(grpc::ServerContext*, const v1::ReadAuditRequest* req,
                         v1::ReadAuditResponse* resp) override {
    if (absl::Status s = CheckCount("limit", req->limit(), 1, kMaxReadEvents); !s.ok()) {
      return ToGrpcStatus(s);
    }
    std::vector<storage::AuditRecord> records;
    // One past the limit tells whether more follow.
    if (absl::Status s = rt_->store().ReadAudit(req->from_number(), req->limit() + 1, &records);
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    for (size_t i = 0; i < records.size(); ++i) {
      if (i == req->limit()) {
        resp->set_next_number(records[i].number);
        break;
      }
      v1::AuditRecord* out = resp->add_records();
      out->set_number(records[i].number);
      out->set_time_ms(records[i].time_ms);
      out->set_who(std::move(records[i].who));
      out->set_method(std::move(records[i].method));
      out->set_request(std::move(records[i].request));
      out->set_code(records[i].code);
      out->set_message(std::move(records[i].message));
    }
    return grpc::Status::OK;
  }

  grpc::Status Backup(grpc::ServerContext*, const v1::BackupRequest* req,
                      v1::BackupResponse* resp) override {
    const std::string& name = req->name();
    const bool plain = !name.empty() && name.size() <= 128 && name[0] != '.' &&
                       std::all_of(name.begin(), name.end(), [](char c) {
                         return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
                                c == '-' || c == '.';
                       });
    if (!plain) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          "name: 1-128 letters, digits, '_', '-' or '.', not starting with '.'"));
    }
    const std::filesystem::path folder = std::filesystem::path(rt_->options().backup_dir) / name;
    std::error_code ec;
    if (std::filesystem::exists(folder, ec)) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat("name: ", folder.string(), " exists; a backup goes to a new folder")));
    }
    if (!rt_->ready()) return NotReady();
    std::filesystem::create_directories(rt_->options().backup_dir, ec);
    const absl::Time start = absl::Now();
    // A restored replica then replays only what arrives during the copy.
    absl::StatusOr<core::CheckpointInfo> cp = rt_->checkpointer().CheckpointNow();
    if (!cp.ok()) return ToGrpcStatus(cp.status());
    absl::StatusOr<uint64_t> log_end = rt_->store().Backup(folder.string());
    if (!log_end.ok()) return ToGrpcStatus(log_end.status());
    resp->set_folder(folder.string());
    resp->set_log_sequence(*log_end);
    resp->set_checkpoint_sequence(cp->sequence);
    resp->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
    return grpc::Status::OK;
  }

 private:
  // The digest of a published model's encoded state, encoded once per
  // version.
  std::string Digest(const core::PublishedModel& m) {
    absl::MutexLock lock(&digest_mu_);
    auto& [version, digest] = digests_[m.name];
    if (version != m.version || digest.empty()) {
      version = m.version;
      digest = absl::StrCat(absl::Hex(core::StableHash(m.view->Encode()), absl::kZeroPad16));
    }
    return digest;
  }

  Runtime* rt_;
  std::function<bool()> serving_;
  absl::Mutex digest_mu_;
  std::map<std::string, std::pair<uint64_t, std::string>> digests_ ABSL_GUARDED_BY(digest_mu_);
};

}  // namespace

grpc::Status NotReady() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "recovering: the checkpoint and log tail are still being loaded");
}

struct MercatoServer::Impl {
  // The completion-queue methods and their threads (stopped by Shutdown).
  AsyncDispatcher dispatcher;
  ServiceRegistrar services;
  std::unique_ptr<HealthService> health;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  absl::Duration drain_timeout;
  std::once_flag shutdown_once;
  Runtime* runtime;
  uint64_t max_lag = 0;
  std::atomic<bool> marked_ready{false};
  // Holds reads that carry a min_sequence; stopped (answering what still
  // waits) before the queues, which its answers go through.
  std::unique_ptr<ReadBarrier> barrier;

  bool Serving() const {
    return marked_ready.load() &&
           (max_lag == 0 || runtime->shared_log() == nullptr || runtime->lag_events() <= max_lag);
  }

  Impl(Runtime* runtime, Metrics* metrics, const Gate* gate)
      : services(runtime, metrics, &dispatcher, gate),
        runtime(runtime),
        barrier(std::make_unique<ReadBarrier>(
            [runtime] { return runtime->learner().snapshot()->applied_sequence; })) {
    dispatcher.SetBarrier(barrier.get());
    services.Serve(std::make_unique<IngestService>(runtime, metrics),
                   v1::Ingest::service_full_name(), Scope::kIngest);
    services.Serve(std::make_unique<CatalogService>(runtime), v1::Catalog::service_full_name(),
                   Scope::kCatalog);
    services.Serve(std::make_unique<AdminService>(runtime, [this] { return Serving(); }),
                   v1::Admin::service_full_name(), Scope::kAdmin);
    for (const ModelModule& m : ModelModules()) {
      if (m.serve) m.serve(services);
    }
    std::vector<std::string> names;
    for (const ServiceRegistrar::Served& s : services.services()) names.push_back(s.name);
    // Health is open to every caller: load balancers carry no token.
    health = std::make_unique<HealthService>(names, [this] { return Serving(); });
    const std::string reflection = grpc::reflection::v1alpha::ServerReflection::service_full_name();
    names.push_back(grpc::health::v1::Health::service_full_name());
    names.push_back(reflection);
    services.Serve(std::make_unique<ReflectionService>(std::move(names)), reflection,
                   Scope::kAdmin);
  }
};

namespace {

// Plaintext without a certificate; TLS from files the provider re-reads
// (renewals take effect without a restart); client certificates required
// and verified with a client CA.
std::shared_ptr<grpc::ServerCredentials> Credentials(const ServerOptions& o) {
  if (o.tls_cert_file.empty()) return grpc::InsecureServerCredentials();
  auto files = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      o.tls_key_file, o.tls_cert_file, o.tls_client_ca_file,
      static_cast<unsigned int>(std::max(1, o.tls_reload_seconds)));
  grpc::experimental::TlsServerCredentialsOptions tls(files);
  tls.watch_identity_key_cert_pairs();
  if (o.tls_client_ca_file.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

}  // namespace

MercatoServer::MercatoServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MercatoServer::~MercatoServer() { Shutdown(); }

absl::StatusOr<std::unique_ptr<MercatoServer>> MercatoServer::Start(const ServerOptions& options,
                                                                    Runtime* runtime) {
  auto impl = std::make_unique<Impl>(runtime, options.metrics, options.gate);
  impl->drain_timeout = options.drain_timeout;
  impl->max_lag = options.max_serving_lag_events;
  Impl& d = *impl;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, Credentials(options), &d.port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(64 << 20);
  if (options.metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(options.metrics->InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  builder.RegisterService(d.health.get());
  for (const ServiceRegistrar::Served& s : d.services.services()) {
    builder.RegisterService(s.service.get());
  }
  d.dispatcher.AddQueues(builder, options.cq_threads, options.max_queued_calls);
  d.server = builder.BuildAndStart();
  if (!d.server || d.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  d.dispatcher.Start();
  return std::unique_ptr<MercatoServer>(new MercatoServer(std::move(impl)));
}

int MercatoServer::port() const { return impl_->port; }

void MercatoServer::MarkReady() { impl_->marked_ready = true; }

void MercatoServer::Shutdown() {
  std::call_once(impl_->shutdown_once, [this] {
    impl_->health->Shutdown();
    impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + impl_->drain_timeout));
    impl_->barrier.reset();
    impl_->dispatcher.Shutdown();
  });
}

void MercatoServer::Wait() { impl_->server->Wait(); }

}  // namespace mercato::server
