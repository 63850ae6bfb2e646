// An in-memory EventSource for learner tests.
#ifndef MERCATO_TESTING_FAKE_EVENT_LOG_H_
#define MERCATO_TESTING_FAKE_EVENT_LOG_H_

#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/learner.h"

namespace mercato::core {

class FakeEventLog final : public EventSource {
 public:
  void Append(std::vector<Event> events) {
    absl::MutexLock lock(&mu_);
    for (Event& e : events) {
      e.sequence = events_.size() + 1;
      events_.push_back(std::move(e));
    }
  }
  uint64_t LastSequence() const override {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }
  absl::Status Read(uint64_t from, size_t max, std::vector<Event>* out) const override {
    absl::MutexLock lock(&mu_);
    for (uint64_t s = from; s <= events_.size() && out->size() < max; ++s) {
      out->push_back(events_[s - 1]);
    }
    return absl::OkStatus();
  }
  void WaitForSequence(uint64_t after, absl::Duration timeout) const override {
    absl::MutexLock lock(&mu_);
    auto past = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() > after; };
    mu_.AwaitWithTimeout(absl::Condition(&past), timeout);
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

class MemoryCheckpointSink final : public CheckpointSink {
 public:
  absl::Status WriteCheckpoint(
      uint64_t sequence,
      const std::vector<std::pair<std::string, std::string>>& states) override {
    absl::SleepFor(write_delay_);
    absl::MutexLock lock(&mu_);
    sequence_ = sequence;
    states_.clear();
    states_.insert(states.begin(), states.end());
    ++writes_;
    return absl::OkStatus();
  }
  uint64_t sequence() const {
    absl::MutexLock lock(&mu_);
    return sequence_;
  }
  std::map<std::string, std::string> states() const {
    absl::MutexLock lock(&mu_);
    return states_;
  }
  int writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  // Each write takes this long. REQUIRES: set before writes start.
  void set_write_delay(absl::Duration d) { write_delay_ = d; }

 private:
  absl::Duration write_delay_;
  mutable absl::Mutex mu_;
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> states_ ABSL_GUARDED_BY(mu_);
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_TESTING_FAKE_EVENT_LOG_H_
