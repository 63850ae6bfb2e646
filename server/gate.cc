#include "server/gate.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/log.h"

namespace mercato::server {
namespace {

constexpr absl::string_view kBearer = "Bearer ";
constexpr size_t kMaxRecordedRequestBytes = 512;

// Identifies the file's version: modification time and size.
std::string StampOf(const std::string& path) {
  std::error_code ec;
  const auto time = std::filesystem::last_write_time(path, ec);
  if (ec) return "";
  const auto size = std::filesystem::file_size(path, ec);
  return absl::StrCat(time.time_since_epoch().count(), "/", ec ? 0 : size);
}

absl::StatusOr<AccessTable> ReadTable(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  return AccessTable::Parse(text.str(), path);
}

// The certificate's subject, common name and SANs, from the handshake.
std::vector<std::string> CertificateIdentities(const grpc::ServerContext& ctx) {
  std::vector<std::string> ids;
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  for (const char* property :
       {GRPC_X509_SUBJECT_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME, GRPC_X509_SAN_PROPERTY_NAME}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      ids.emplace_back(v.data(), v.size());
    }
  }
  return ids;
}

// Clears every field of `m` named user_id, at any depth.
void ForgetCustomers(google::protobuf::Message* m) {
  const google::protobuf::Reflection* r = m->GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->name() == "user_id") {
      r->ClearField(m, f);
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*m, f); ++i)
          ForgetCustomers(r->MutableRepeatedMessage(m, f, i));
      } else {
        ForgetCustomers(r->MutableMessage(m, f));
      }
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gate>> Gate::Open(const GateOptions& options) {
  std::unique_ptr<Gate> gate(new Gate(options));
  if (options.access_file.empty()) return gate;
  if (absl::Status s = gate->Reload(); !s.ok()) return s;
  gate->watcher_ = std::thread([g = gate.get()] { g->Watch(); });
  return gate;
}

Gate::~Gate() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (watcher_.joinable()) watcher_.join();
}

absl::Status Gate::Reload() {
  if (!has_access_file()) return absl::OkStatus();
  const std::string stamp = StampOf(options_.access_file);
  absl::StatusOr<AccessTable> table = ReadTable(options_.access_file);
  absl::MutexLock lock(&mu_);
  // A bad file is not tried again until it changes.
  file_stamp_ = stamp;
  if (!table.ok()) return table.status();
  table_ = std::make_shared<const AccessTable>(*std::move(table));
  MERCATO_LOG(kInfo) << "access file " << options_.access_file << ": " << table_->tokens()
                     << " tokens, " << table_->certificates() << " certificates";
  return absl::OkStatus();
}

void Gate::Watch() {
  absl::MutexLock lock(&stop_mu_);
  auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stop_mu_) { return stop_; };
  while (!stop_mu_.AwaitWithTimeout(absl::Condition(&stopped), options_.poll)) {
    const std::string stamp = StampOf(options_.access_file);
    bool changed;
    {
      absl::ReaderMutexLock l(&mu_);
      changed = stamp != file_stamp_;
    }
    if (!changed) continue;
    if (absl::Status s = Reload(); !s.ok()) {
      MERCATO_LOG(kError) << "access file changed but is not used, the previous grants stay: " << s;
    }
  }
}

std::shared_ptr<const AccessTable> Gate::table() const {
  absl::ReaderMutexLock lock(&mu_);
  return table_;
}

bool Gate::Grants(absl::string_view token, Scope scope) const {
  const std::shared_ptr<const AccessTable> t = table();
  const Grant* grant = t ? t->ForToken(token) : nullptr;
  return grant != nullptr && grant->Allows(scope);
}

grpc::Status Gate::Admit(const grpc::ServerContext& ctx, Scope scope, std::string* who) const {
  const std::shared_ptr<const AccessTable> table = this->table();
  const Grant* grant = nullptr;
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find("authorization"); it != metadata.end()) {
    const absl::string_view value(it->second.data(), it->second.size());
    if (!absl::StartsWith(value, kBearer)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "authorization: must be 'Bearer <token>'");
    }
    if (table) grant = table->ForToken(value.substr(kBearer.size()));
    if (grant == nullptr) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "authorization: unknown or revoked token");
    }
  } else if (options_.mutual_tls) {
    const std::vector<std::string> ids = CertificateIdentities(ctx);
    if (!table) {  // mutual TLS alone: every verified certificate may call
      *who = ids.empty() ? "client certificate" : ids.front();
      return grpc::Status::OK;
    }
    grant = table->ForCertificate(ids);
    if (grant == nullptr) {
      return grpc::Status(
          grpc::StatusCode::UNAUTHENTICATED,
          absl::StrCat("authorization: no token, and the client certificate (",
                       ids.empty() ? "no subject" : ids.front(), ") is not in the access file"));
    }
  } else {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization: missing; send 'authorization: Bearer <token>'");
  }
  *who = grant->name;
  if (!grant->Allows(scope)) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("authorization: '", grant->name, "' lacks scope '",
                                     ScopeName(scope), "', which this method needs"));
  }
  return grpc::Status::OK;
}

void KeepAudit(storage::Store& store, storage::AuditRecord record) {
  record.time_ms = core::Clock::Real()->NowMs();
  MERCATO_LOG(kInfo) << "audit: who=\"" << record.who << "\" method=" << record.method
                     << " code=" << record.code << " request={" << record.request << "}"
                     << (record.message.empty() ? "" : " message=\"" + record.message + "\"");
  if (absl::StatusOr<uint64_t> n = store.AppendAudit(std::move(record)); !n.ok()) {
    MERCATO_LOG(kError) << "audit record not kept: " << n.status();
  }
}

void MethodGate::Record(absl::string_view who, const google::protobuf::Message* request,
                        const grpc::Status& outcome) const {
  storage::AuditRecord record;
  record.who = who.empty() ? "unauthenticated" : std::string(who);
  record.method = method_;
  if (request != nullptr) {
    std::unique_ptr<google::protobuf::Message> copy(request->New());
    copy->CopyFrom(*request);
    ForgetCustomers(copy.get());
    google::protobuf::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    printer.SetTruncateStringFieldLongerThan(64);
    printer.PrintToString(*copy, &record.request);
    if (record.request.size() > kMaxRecordedRequestBytes)
      record.request.resize(kMaxRecordedRequestBytes);
  }
  record.code = outcome.error_code();
  record.message = outcome.error_message();
  KeepAudit(*audit_, std::move(record));
}

}  // namespace mercato::server
