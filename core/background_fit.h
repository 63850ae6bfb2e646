// One lifecycle for every model's periodic fit (recommendation retrains,
// segment refits, and any later model's):
//   - a fit starts at a log position, from the model's state there, and
//     runs on its own thread;
//   - its result is adopted at a point the log decides, never when the
//     thread happens to finish: at the FIT_DONE record the learner appends
//     to the log once the fit has finished, or `adopt_after` events after
//     its start, whichever comes first. When the learner reaches that point
//     before the fit has finished (a replay), the model's events wait for
//     it (Learner), while the other models go on;
//   - when a fit is due is a pure function of counts kept from the log
//     (FitDue).
// So a model's state after any event depends on the events alone, and two
// runs, replicas or restarts of the same log agree bit for bit.
#ifndef MERCATO_CORE_BACKGROUND_FIT_H_
#define MERCATO_CORE_BACKGROUND_FIT_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/model.h"

namespace mercato::core {

// Counts a model keeps from the log to decide when its next fit is due.
struct FitProgress {
  // Units (interactions, purchases: the model's choice) since the last fit
  // started.
  uint64_t since_last = 0;
  // Whether a fit has been adopted before.
  bool fitted = false;
  // Before the first fit: whether there is enough to fit at all.
  bool first_ready = true;
};

// Whether a fit is due, for fits every `every` units (0 = on request only):
// the first as soon as there is enough to fit and anything new, the next
// ones every `every` units.
constexpr bool FitDue(uint64_t every, const FitProgress& p) {
  if (every == 0) return false;
  return p.fitted ? p.since_last >= every : p.first_ready && p.since_last > 0;
}

// Test hook: every background fit sleeps a random time up to this before it
// starts, so that tests can show that its finishing moment changes nothing.
void SetFitDelayForTesting(absl::Duration max_delay);
absl::Duration FitDelayForTesting();

// Runs on a fit's own thread before its work: lowers the thread's priority
// (kRetrainNice) and sleeps the test delay, if any.
void PrepareFitThread();

// One model's running fit. Not thread-safe: owned by the learner thread,
// except Abandon(), which any thread may call. Movable, so that a model can
// be replaced whole (Decode), but only while no fit runs.
template <class Result>
class BackgroundFit {
 public:
  // The work of one fit; returns no result when `abandoned` was set.
  using Work = std::function<std::optional<Result>(const std::atomic<bool>& abandoned)>;

  BackgroundFit() = default;
  BackgroundFit(BackgroundFit&&) = default;
  BackgroundFit& operator=(BackgroundFit&& other) {
    Wait();
    future_ = std::move(other.future_);
    abandoned_ = std::move(other.abandoned_);
    status_ = other.status_;
    adopt_at_ = other.adopt_at_;
    return *this;
  }
  ~BackgroundFit() { Wait(); }

  // Starts `work` at log position `sequence`, on its own thread when
  // `background` (else now, inline). Its result is to be adopted before the
  // event at `sequence + max(1, adopt_after)`. Does nothing once abandoned.
  // REQUIRES: !running().
  void Start(uint64_t sequence, uint64_t adopt_after, bool background, Work work) {
    if (abandoned_->load()) return;
    status_ = RunningRetrain{absl::ToUnixMillis(absl::Now()), sequence};
    adopt_at_ = sequence + std::max<uint64_t>(1, adopt_after);
    if (!background) {
      std::promise<std::optional<Result>> done;
      done.set_value(work(*abandoned_));
      future_ = done.get_future();
      return;
    }
    future_ = std::async(std::launch::async, [work = std::move(work), flag = abandoned_] {
      PrepareFitThread();
      return work(*flag);
    });
  }

  bool running() const { return future_.valid(); }
  // Whether the running fit has finished (never blocks).
  bool finished() const {
    return running() && future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  // The start of the running fit once it has finished with a result to
  // adopt; none otherwise.
  std::optional<uint64_t> Finished() const {
    if (abandoned_->load() || !finished()) return std::nullopt;
    return status_->started_sequence;
  }
  // The FIT_DONE record of the fit started at `started` is at `sequence`.
  void DoneAt(uint64_t started, uint64_t sequence) {
    if (status_ && status_->started_sequence == started) adopt_at_ = std::min(adopt_at_, sequence);
  }
  // Whether the event at `sequence` comes at or after the running fit's
  // adoption point.
  bool Due(uint64_t sequence) const { return running() && sequence >= adopt_at_; }
  // The gate for the event at `sequence`: kAdopted after calling `adopt`
  // with the result (when the fit completed) once it is due and finished;
  // kWait while it is due and still running, or for good once abandoned.
  template <class Adopt>
  FitGate Gate(uint64_t sequence, Adopt&& adopt) {
    if (!Due(sequence)) return FitGate::kOpen;
    if (abandoned_->load() || !finished()) return FitGate::kWait;
    Finish(std::forward<Adopt>(adopt));
    return FitGate::kAdopted;
  }
  // Adopts the running fit's result now, waiting for it; for tools and tests
  // that fit inline. No-op when none runs.
  template <class Adopt>
  void Finish(Adopt&& adopt) {
    if (!running()) return;
    std::optional<Result> result = future_.get();
    status_.reset();
    if (result) adopt(*std::move(result));
  }
  // The running fit, for status; none when idle.
  const std::optional<RunningRetrain>& status() const { return status_; }
  // A running fit ends early and is never adopted; none starts after.
  void Abandon() { abandoned_->store(true); }

 private:
  void Wait() {
    if (future_.valid()) future_.wait();
  }

  std::future<std::optional<Result>> future_;
  std::shared_ptr<std::atomic<bool>> abandoned_ = std::make_shared<std::atomic<bool>>(false);
  std::optional<RunningRetrain> status_;
  uint64_t adopt_at_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_BACKGROUND_FIT_H_
