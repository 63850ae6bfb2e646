// The running service's state, independent of gRPC: the store, the models'
// learner and the checkpointer, and recovery (newest checkpoint + log tail).
#ifndef MERCATO_SERVER_RUNTIME_H_
#define MERCATO_SERVER_RUNTIME_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/learner.h"
#include "server/erasure.h"
#include "server/module_options.h"
#include "storage/redis_log.h"
#include "storage/store.h"

namespace mercato::server {

struct RuntimeOptions {
  // Folder of the embedded database.
  std::string data_dir = "mercato-data";
  // fsync each commit group before acknowledging it.
  bool sync_writes = true;
  core::LearnerOptions learner;
  // How often the served snapshot is checkpointed when it changed.
  absl::Duration checkpoint_interval = absl::Seconds(60);
  // ... and also after this many applied events (0 = only by time), so that a
  // restart replays at most about this many.
  uint64_t checkpoint_every_events = 200000;
  // Each model module's options (server/model_module.h).
  ModuleOptions models;
  // Where Admin.Backup writes its folders.
  std::string backup_dir = "mercato-data.backups";
  // A backup (Admin.Backup) that an empty data folder starts from; ignored
  // when the folder holds a database already (a restart).
  std::string restore_from;
  // The log shared with other replicas; none: the store's own log.
  std::optional<storage::RedisLogOptions> shared_log;
};

// Thread-safe after Open.
class Runtime {
 public:
  // Opens the store. Ingest works from here on; models are served after
  // Recover().
  static absl::StatusOr<std::unique_ptr<Runtime>> Open(const RuntimeOptions& options);
  ~Runtime();

  // Loads the newest checkpoint, replays the log tail, starts the learner and
  // the checkpointer, then reports ready.
  absl::Status Recover();
  bool ready() const { return ready_.load(); }

  // Stops learning, applies what is left of the log and writes a final
  // checkpoint. Idempotent.
  absl::Status Shutdown();

  const RuntimeOptions& options() const { return options_; }
  // The replica's database: what the learner reads, the catalogue, the
  // checkpoints.
  storage::Store& store() { return *store_; }
  // Where every write goes: the store, or the shared log.
  storage::LogWriter& writer() { return *writer_; }
  // The shared log; null without one.
  const storage::RedisLog* shared_log() const { return shared_log_.get(); }
  // The log's end as this replica knows it: the shared log's head, or the
  // store's log end.
  uint64_t log_head() const;
  // Events of the log not yet in the served snapshot.
  uint64_t lag_events() const;
  // Appends `event` to the log in the background, batched with others and
  // without fsync: for records the server makes itself (scored orders),
  // whose caller must not wait for a disk. Lost only if the process dies
  // within milliseconds of the call, or the machine before the next fsync.
  void AppendInBackground(core::Event event);
  // Records the server makes on a schedule (served recommendations): the
  // background appender calls `collect` every kRecordSourceInterval, and
  // once more at shutdown, and appends what it returns as above.
  static constexpr absl::Duration kRecordSourceInterval = absl::Seconds(1);
  void AddRecordSource(std::function<std::vector<core::Event>()> collect);
  core::Learner& learner() { return *learner_; }
  core::Checkpointer& checkpointer() { return *checkpointer_; }
  // Completes erasures in the background (server/erasure.h).
  Eraser& eraser() { return *eraser_; }

 private:
  Runtime() = default;
  RuntimeOptions options_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::RedisLog> shared_log_;
  storage::LogWriter* writer_ = nullptr;
  std::unique_ptr<core::Learner> learner_;
  std::unique_ptr<core::Checkpointer> checkpointer_;
  std::unique_ptr<Eraser> eraser_;
  void RunBackgroundAppends();
  absl::Mutex append_mu_;
  std::vector<core::Event> to_append_ ABSL_GUARDED_BY(append_mu_);
  std::vector<std::function<std::vector<core::Event>()>> record_sources_
      ABSL_GUARDED_BY(append_mu_);
  bool stop_appending_ ABSL_GUARDED_BY(append_mu_) = false;
  std::thread appender_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> shut_down_{false};
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_RUNTIME_H_
