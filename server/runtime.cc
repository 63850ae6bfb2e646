#include "server/runtime.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "server/model_registry.h"

namespace mercato::server {
namespace {

// Copies the backup `from` into `data_dir` when that is empty, through a
// folder beside it, so that an interrupted copy is never opened; a database
// there already (a restart) is left as it is.
absl::Status Restore(const std::string& from, const std::string& data_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::path(data_dir) / "CURRENT", ec)) {
    MERCATO_LOG(kInfo) << data_dir << " holds a database: --restore_from=" << from << " not used";
    return absl::OkStatus();
  }
  if (!fs::is_empty(data_dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--restore_from: ", data_dir, " holds files but no database; give an empty --data_dir"));
  }
  if (!fs::exists(fs::path(from) / "CURRENT", ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--restore_from: ", from, " is no backup (it has no CURRENT file)"));
  }
  const std::string staging = data_dir + ".restoring";
  fs::remove_all(staging, ec);
  fs::copy(from, staging, fs::copy_options::recursive, ec);
  if (!ec) fs::remove_all(data_dir, ec);
  if (!ec) fs::rename(staging, data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--restore_from: copying ", from, " to ", data_dir, ": ", ec.message()));
  }
  MERCATO_LOG(kInfo) << "restored " << data_dir << " from the backup " << from;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Open(const RuntimeOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data folder ", options.data_dir, ": ", ec.message()));
  }
  if (!options.restore_from.empty()) {
    if (absl::Status s = Restore(options.restore_from, options.data_dir); !s.ok()) return s;
  }
  storage::StoreOptions store_options;
  store_options.path = options.data_dir;
  store_options.sync = options.sync_writes;
  absl::StatusOr<std::unique_ptr<storage::Store>> store = storage::Store::Open(store_options);
  if (!store.ok()) return store.status();
  absl::StatusOr<RegisteredModels> models = MakeModels(options.models);
  if (!models.ok()) return models.status();
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->options_ = options;
  rt->store_ = *std::move(store);
  rt->writer_ = rt->store_.get();
  if (options.shared_log) {
    rt->shared_log_ = std::make_unique<storage::RedisLog>(*options.shared_log, rt->store_.get());
    rt->writer_ = rt->shared_log_.get();
  }
  rt->learner_ =
      std::make_unique<core::Learner>(options.learner, std::move(models->models),
                                      rt->store_.get(), core::Clock::Real(), std::move(models->reads));
  Runtime* self = rt.get();
  rt->learner_->SetRecordSink([self](core::Event e) { self->AppendInBackground(std::move(e)); });
  rt->checkpointer_ = std::make_unique<core::Checkpointer>(
      rt->learner_.get(), rt->store_.get(), core::Clock::Real(), options.checkpoint_interval,
      options.checkpoint_every_events);
  rt->eraser_ = std::make_unique<Eraser>(rt->store_.get(), rt->writer_, rt->learner_.get(),
                                         rt->checkpointer_.get());
  // The replica copies the shared log from here on; recovery replays what
  // it has copied so far, and the learner follows the rest.
  if (rt->shared_log_) {
    rt->shared_log_->Start([self] { return self->checkpointer_->last().sequence; });
  }
  return rt;
}

Runtime::~Runtime() {
  if (absl::Status s = Shutdown(); !s.ok()) MERCATO_LOG(kError) << "shutdown: " << s;
}

absl::Status Runtime::Recover() {
  absl::StatusOr<std::optional<storage::LoadedCheckpoint>> cp = store_->ReadCheckpoint();
  if (!cp.ok()) return cp.status();
  if (cp->has_value()) {
    const storage::LoadedCheckpoint& loaded = **cp;
    if (absl::Status s = learner_->Restore(loaded.sequence, loaded.states); !s.ok()) return s;
    MERCATO_LOG(kInfo) << "loaded checkpoint at sequence " << loaded.sequence;
  }
  if (absl::Status s = learner_->CatchUp(/*drain=*/true); !s.ok()) return s;
  if (cp->has_value()) {
    core::CheckpointInfo info;
    info.sequence = (*cp)->sequence;
    info.written_at_ms = (*cp)->written_at_ms;
    // With no log tail the served models are the checkpoint's: nothing to
    // write until an event or a retrain changes them.
    const std::shared_ptr<const core::Snapshot> snap = learner_->settled_snapshot();
    if (snap->applied_sequence == info.sequence) info.snapshot_version = snap->version;
    checkpointer_->SetLoaded(info);
  }
  MERCATO_LOG(kInfo) << "replayed the log to sequence " << learner_->applied_sequence();
  learner_->Start();
  checkpointer_->Start();
  eraser_->Start();
  appender_ = std::thread([this] {
    core::SetThreadNice(options_.learner.nice);
    RunBackgroundAppends();
  });
  ready_ = true;
  return absl::OkStatus();
}

absl::Status Runtime::Shutdown() {
  if (shut_down_.exchange(true)) return absl::OkStatus();
  const bool was_ready = ready_.exchange(false);
  if (appender_.joinable()) {
    {
      absl::MutexLock lock(&append_mu_);
      stop_appending_ = true;
    }
    appender_.join();  // appends what is queued first
  }
  eraser_->Stop();
  checkpointer_->Stop();
  learner_->Stop();
  if (shared_log_) shared_log_->Stop();
  if (!was_ready) return absl::OkStatus();
  if (absl::Status s = learner_->CatchUp(); !s.ok()) return s;
  return checkpointer_->CheckpointIfChanged().status();
}

uint64_t Runtime::log_head() const {
  const uint64_t local = store_->LastSequence();
  return shared_log_ ? std::max(local, shared_log_->head()) : local;
}

uint64_t Runtime::lag_events() const {
  const uint64_t head = log_head();
  const uint64_t served = learner_->snapshot()->served_sequence();
  return head > served ? head - served : 0;
}

void Runtime::AppendInBackground(core::Event event) {
  absl::MutexLock lock(&append_mu_);
  to_append_.push_back(std::move(event));
}

void Runtime::AddRecordSource(std::function<std::vector<core::Event>()> collect) {
  absl::MutexLock lock(&append_mu_);
  record_sources_.push_back(std::move(collect));
}

void Runtime::RunBackgroundAppends() {
  absl::Duration backoff = absl::Milliseconds(50);
  absl::Time next_collect = absl::Now() + kRecordSourceInterval;
  for (;;) {
    std::vector<core::Event> batch;
    bool stop;
    {
      absl::MutexLock lock(&append_mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(append_mu_) {
        return stop_appending_ || !to_append_.empty();
      };
      append_mu_.AwaitWithDeadline(absl::Condition(&work), next_collect);
      if (!stop_appending_ && !to_append_.empty()) {
        // Let a batch gather: one write for many records.
        append_mu_.Unlock();
        absl::SleepFor(absl::Milliseconds(5));
        append_mu_.Lock();
      }
      batch.swap(to_append_);
      stop = stop_appending_;
      if (stop || absl::Now() >= next_collect) {
        for (const auto& collect : record_sources_) {
          for (core::Event& e : collect()) batch.push_back(std::move(e));
        }
        next_collect = absl::Now() + kRecordSourceInterval;
      }
    }
    if (!batch.empty()) {
      absl::StatusOr<storage::AppendResult> r =
          writer_->Append(batch, storage::Durability::kProcessCrashSafe);
      if (!r.ok()) {
        MERCATO_LOG(kError) << "background append of " << batch.size()
                            << " records: " << r.status();
        // A shared log comes back: the records wait for it, before any
        // queued since, unless the server stops.
        if (absl::IsUnavailable(r.status()) && !stop) {
          absl::SleepFor(backoff);
          backoff = std::min(backoff * 2, absl::Seconds(2));
          absl::MutexLock lock(&append_mu_);
          to_append_.insert(to_append_.begin(), std::make_move_iterator(batch.begin()),
                            std::make_move_iterator(batch.end()));
          continue;
        }
      }
      backoff = absl::Milliseconds(50);
    }
    if (stop) return;
  }
}

}  // namespace mercato::server
