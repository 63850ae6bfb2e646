// The learner: the one thread that mutates model state. It reads the durable
// event log in sequence order, folds every event into every model, and
// publishes a new Snapshot every `publish_interval` or `publish_every_events`.
// The Checkpointer writes the served snapshot on its own schedule.
//
// Same log + same options => same models, bit for bit: nothing here depends
// on wall time except when publications happen, never what they contain.
#ifndef MERCATO_CORE_LEARNER_H_
#define MERCATO_CORE_LEARNER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <optional>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/clock.h"
#include "core/model.h"
#include "core/shop_clock.h"
#include "core/snapshot.h"

namespace mercato::core {

// The durable log as the learner sees it. Implemented in storage/.
class EventSource {
 public:
  virtual ~EventSource() = default;
  // The highest durable sequence number; 0 for an empty log.
  virtual uint64_t LastSequence() const = 0;
  // Appends to `out` up to `max` events with sequence >= `from`, in order.
  virtual absl::Status Read(uint64_t from, size_t max, std::vector<Event>* out) const = 0;
  // Returns when LastSequence() > `after` or `timeout` has passed.
  virtual void WaitForSequence(uint64_t after, absl::Duration timeout) const = 0;
};

// Where checkpoints go. Implemented in storage/.
class CheckpointSink {
 public:
  virtual ~CheckpointSink() = default;
  // Writes every (model name, state) and `sequence` atomically.
  virtual absl::Status WriteCheckpoint(
      uint64_t sequence, const std::vector<std::pair<std::string, std::string>>& states) = 0;
};

struct LearnerOptions {
  // Publish at least this often while events are being applied.
  absl::Duration publish_interval = absl::Milliseconds(50);
  // ... and also after this many events, whichever comes first.
  uint64_t publish_every_events = 100000;
  // Once caught up with the log, publish at once, but no sooner than this
  // after the last publication: under a steady stream of events the learner
  // is caught up after nearly every read, and each publication costs the
  // copy-on-write of every block written next.
  absl::Duration publish_gap = absl::Milliseconds(10);
  // Events read from the log at a time.
  size_t read_batch = 4096;
  // Events one model may hold back while it waits for a fit's adoption
  // (core/background_fit.h), at most; beyond, the learner stops reading the
  // log until that fit is done, so memory stays bounded and the other
  // models lag with it (the events are safe in the log meanwhile). Exceeded
  // by up to one read batch.
  size_t max_waiting_events = 1000000;
  // Niceness of the learner thread (and of the server's background
  // appender and the checkpointer): above 0, request-serving threads win the
  // CPU when both want it, and learning lags (ModelStatus shows by how much)
  // instead of answers slowing down.
  int nice = 10;
};

// The learner's own entry among the checkpointed states: its shop time.
inline constexpr char kLearnerStateName[] = "learner";

// Niceness of model retrains and refits, which run beside the learner:
// below it, so fold-in keeps pace with the events while they run.
inline constexpr int kRetrainNice = 19;

// Sets the calling thread's niceness (Linux); ignores failure.
void SetThreadNice(int nice);

// Thread-safe: snapshot() and the counters may be read from any thread;
// Restore/CatchUp only before Start.
class Learner {
 public:
  // `reads[i]` lists the models that model i reads (indexes before i): the
  // learner never lets a model apply an event before those have.
  Learner(LearnerOptions options, std::vector<std::unique_ptr<Model>> models,
          const EventSource* log, const Clock* clock,
          std::vector<std::vector<size_t>> reads = {});
  ~Learner();

  // Loads model states saved by a checkpoint at `sequence`. A model missing
  // from `states` keeps its empty state. REQUIRES: not started.
  absl::Status Restore(uint64_t sequence, const std::map<std::string, std::string>& states);
  // Applies the whole log tail and publishes, unless the served snapshot
  // already has it all. With `drain`, also waits until no model holds
  // events back for a background fit (recovery: a model is served only once
  // it has applied the whole tail). REQUIRES: not started.
  absl::Status CatchUp(bool drain = false);
  // Where the learner appends its own records (FIT_DONE once a model's
  // background fit has finished). Without one, fits are adopted only
  // `adopt_after_events` after their start. REQUIRES: not started.
  void SetRecordSink(std::function<void(Event)> sink) { record_sink_ = std::move(sink); }
  void Start();
  // Applies nothing more after returning, and abandons the models'
  // background retrains (Model::Abandon). Idempotent.
  void Stop();

  std::shared_ptr<const Snapshot> snapshot() const { return holder_.Get(); }
  // The latest snapshot that is a function of its log position alone: no
  // model has a background fit running or events held back in it. What
  // checkpoints write; a restart from it runs the same fits again at the
  // same positions.
  std::shared_ptr<const Snapshot> settled_snapshot() const { return settled_.Get(); }
  const LearnerOptions& options() const { return options_; }
  // The sequence the learner has applied (may be ahead of the snapshot).
  uint64_t applied_sequence() const { return applied_.load(); }
  // The last error reading the log, OK when none.
  absl::Status last_error() const;
  // Whether a RETRAIN event for model `name` ("" = every model that can)
  // is valid: NOT_FOUND for an unknown name, UNIMPLEMENTED for a model that
  // learns online only. The fit itself starts where the event is in the log.
  absl::Status CheckRetrain(std::string_view name) const;
  // Snapshot publications so far and the time they took in all.
  uint64_t publishes() const { return publishes_.load(); }
  double publish_seconds() const { return publish_ns_.load() / 1e9; }

 private:
  // Applies up to one read batch; returns the number applied.
  absl::StatusOr<size_t> Step();
  // Gives `event` to model `i` through its gate, or holds it back in
  // waiting_[i] (then previews it). True when what the model serves changed.
  bool Feed(size_t i, const Event& event);
  // Model `i`'s gate for `event`, after telling it of a FIT_DONE record.
  FitGate GateFor(size_t i, const Event& event);
  // A RETRAIN event starts a fit of the models it names; every other event
  // goes to Model::Apply.
  bool ApplyTo(size_t i, const Event& event);
  // Applies the held-back events the gates let through now, one event per
  // model in turn, so that a model reading another sees it at the same
  // event as when nothing was held back. True when any was applied.
  bool Drain();
  // Whether model `i` may apply the event at `sequence` now: every model it
  // reads has applied it, and every model reading it has applied the ones
  // before.
  bool InStep(size_t i, uint64_t sequence) const;
  // Whether a model holds max_waiting_events back.
  bool Full() const;
  void Publish();
  void Run();

  const LearnerOptions options_;
  std::vector<std::unique_ptr<Model>> models_;
  const std::vector<std::vector<size_t>> reads_;
  std::vector<std::vector<size_t>> readers_;  // the inverse of reads_
  const EventSource* log_;
  const Clock* clock_;
  SnapshotHolder<Snapshot> holder_;
  SnapshotHolder<Snapshot> settled_;

  // Learner-thread state.
  std::vector<bool> changed_;
  // Per model, the events held back until a fit is adopted, in log order.
  std::vector<std::deque<Event>> waiting_;
  std::function<void(Event)> record_sink_;
  // Per model, the start of the last finished fit whose FIT_DONE was sent.
  std::vector<std::optional<uint64_t>> announced_;
  std::vector<PublishedModel> published_;
  uint64_t snapshot_version_ = 0;
  uint64_t since_publish_ = 0;
  ShopClock shop_clock_;
  std::vector<Event> buffer_;

  // Applies held-back events that may go now and polls every model; true
  // when a model changed.
  bool Housekeep();
  // Frees the replaced snapshots no reader holds any more. Kept until then so
  // that a request thread never drops the last reference to one and pays
  // for freeing its state.
  void ReleaseRetired();
  std::vector<std::shared_ptr<const Snapshot>> retired_;

  std::atomic<uint64_t> applied_{0};
  std::atomic<uint64_t> publishes_{0}, publish_ns_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable absl::Mutex error_mu_;
  absl::Status last_error_ ABSL_GUARDED_BY(error_mu_);
};

struct CheckpointInfo {
  uint64_t sequence = 0;
  // Version of the snapshot written; 0 for one loaded at recovery.
  uint64_t snapshot_version = 0;
  int64_t written_at_ms = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// Writes the served snapshot to a CheckpointSink every `interval` (when it
// changed; stretched to 10x the last checkpoint's duration when that is
// longer) and on demand. Encoding reads an immutable snapshot, so the
// learner never pauses for a checkpoint. Thread-safe.
class Checkpointer {
 public:
  // The wait between checkpoints is at least this many times the last one's
  // duration.
  static constexpr int kCheckpointTimeShare = 10;

  // Checkpoints come every `interval`, and also once `every_events` events
  // (0 = no such bound) have been applied since the last one, so that a
  // restart replays a bounded tail; never closer together than
  // kCheckpointTimeShare times the last one's duration.
  Checkpointer(const Learner* learner, CheckpointSink* sink, const Clock* clock,
               absl::Duration interval, uint64_t every_events = 0);
  ~Checkpointer();
  void Start();
  void Stop();
  // Writes a checkpoint of the current snapshot now (even if unchanged).
  absl::StatusOr<CheckpointInfo> CheckpointNow();
  // Writes one only when the snapshot is not the last one written (or
  // loaded); returns last() when it is.
  absl::StatusOr<CheckpointInfo> CheckpointIfChanged();
  CheckpointInfo last() const;
  // Seeds last() with the checkpoint recovery loaded; its snapshot_version
  // is that of the snapshot serving exactly the loaded state, if any.
  void SetLoaded(CheckpointInfo info);

 private:
  const Learner* learner_;
  CheckpointSink* sink_;
  const Clock* clock_;
  const absl::Duration interval_;
  const uint64_t every_events_;
  absl::Mutex write_mu_;  // serialises writers
  mutable absl::Mutex mu_;
  CheckpointInfo last_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_LEARNER_H_
