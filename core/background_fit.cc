#include "core/background_fit.h"

#include <random>

#include "core/learner.h"

namespace mercato::core {
namespace {

std::atomic<int64_t> fit_delay_us{0};

}  // namespace

void SetFitDelayForTesting(absl::Duration max_delay) {
  fit_delay_us.store(absl::ToInt64Microseconds(max_delay));
}

absl::Duration FitDelayForTesting() { return absl::Microseconds(fit_delay_us.load()); }

void PrepareFitThread() {
  SetThreadNice(kRetrainNice);
  if (const int64_t max_us = fit_delay_us.load(); max_us > 0) {
    thread_local std::mt19937_64 rng(std::random_device{}());
    absl::SleepFor(absl::Microseconds(std::uniform_int_distribution<int64_t>(0, max_us)(rng)));
  }
}

}  // namespace mercato::core
