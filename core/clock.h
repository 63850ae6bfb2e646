// Time seam: production code asks a Clock, tests can move a FakeClock.
#ifndef MERCATO_CORE_CLOCK_H_
#define MERCATO_CORE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"

namespace mercato::core {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the epoch.
  virtual int64_t NowMs() const = 0;
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  int64_t NowMs() const override { return absl::ToUnixMillis(absl::Now()); }
};

inline Clock* Clock::Real() {
  static RealClock clock;
  return &clock;
}

// Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Advance(int64_t ms) { now_ms_ += ms; }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_CLOCK_H_
