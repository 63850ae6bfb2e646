// Group commit, shared by the embedded log and the Redis one: concurrent
// writers queue up; the one at the front leads a group of the writers at
// the queue's front (itself always, the next ones while their events fit
// within `max_events`), runs the group's one write without the lock, and
// hands every member the outcome. One group is written at a time.
//
// Thread-safe.
#ifndef MERCATO_STORAGE_COMMIT_QUEUE_H_
#define MERCATO_STORAGE_COMMIT_QUEUE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/log_writer.h"

namespace mercato::storage {

// W has `const std::vector<core::Event>* events` and `AppendResult result`,
// which `write` fills for each writer of a group.
template <class W>
class CommitQueue {
 public:
  using Write = std::function<absl::Status(const std::vector<W*>&)>;
  CommitQueue(size_t max_events, Write write) : max_events_(max_events), write_(std::move(write)) {}

  // Queues `writer` and returns once a leader (maybe this call) has written
  // a group holding it: its result, or the error that write returned.
  absl::StatusOr<AppendResult> Commit(W* writer) {
    absl::Status status = Join(writer);
    if (!status.ok()) return status;
    return std::move(writer->result);
  }

 private:
  absl::Status Join(W* writer) {
    Slot self{writer};
    absl::MutexLock lock(&mu_);
    queue_.push_back(&self);
    while (!self.done && queue_.front() != &self) self.cv.Wait(&mu_);
    if (self.done) return self.status;
    std::vector<Slot*> group;
    std::vector<W*> writers;
    size_t total = 0;
    for (Slot* s : queue_) {
      const size_t n = s->writer->events->size();
      if (!group.empty() && total + n > max_events_) break;
      group.push_back(s);
      writers.push_back(s->writer);
      total += n;
    }
    // Others may queue meanwhile; no other leader runs while this one is
    // at the front.
    mu_.Unlock();
    const absl::Status status = write_(writers);
    mu_.Lock();
    for (Slot* s : group) {
      queue_.pop_front();
      s->status = status;
      s->done = true;
      if (s != &self) s->cv.Signal();
    }
    if (!queue_.empty()) queue_.front()->cv.Signal();
    return status;
  }

  struct Slot {
    W* writer;
    absl::Status status;
    bool done = false;
    absl::CondVar cv;
  };
  const size_t max_events_;
  const Write write_;
  absl::Mutex mu_;
  std::deque<Slot*> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_COMMIT_QUEUE_H_
