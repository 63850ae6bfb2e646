#include "core/background_fit.h"

#include <gtest/gtest.h>

#include <thread>

namespace mercato::core {
namespace {

// When a fit is due, from a table: every `every` units once fitted; before
// the first fit, as soon as there is enough to fit and anything new.
TEST(BackgroundFitTest, FitDueFollowsTheTable) {
  struct Row {
    uint64_t every;
    FitProgress progress;
    bool due;
  };
  const Row rows[] = {
      {0, {1000000, true, true}, false},  // on request only
      {100, {99, true, true}, false},
      {100, {100, true, true}, true},
      {100, {250, true, true}, true},
      {100, {0, false, true}, false},     // nothing new to fit
      {100, {1, false, true}, true},      // the first fit at once
      {100, {500, false, false}, false},  // not enough to fit yet
  };
  for (const Row& r : rows) {
    EXPECT_EQ(FitDue(r.every, r.progress), r.due)
        << "every " << r.every << ", since " << r.progress.since_last << ", fitted "
        << r.progress.fitted << ", first ready " << r.progress.first_ready;
  }
}

// A finished fit is adopted at its position and not before; its FIT_DONE
// record brings that position forward, and only for the fit it names.
TEST(BackgroundFitTest, AdoptedAtTheLogPositionNotWhenItFinishes) {
  BackgroundFit<int> fit;
  fit.Start(10, 50, /*background=*/true,
            [](const std::atomic<bool>&) -> std::optional<int> { return 7; });
  while (!fit.Finished()) std::this_thread::yield();
  EXPECT_EQ(*fit.Finished(), 10u);
  int adopted = 0;
  const auto adopt = [&](int v) { adopted = v; };
  EXPECT_EQ(fit.Gate(59, adopt), FitGate::kOpen);
  fit.DoneAt(/*started=*/9, 30);  // another fit's record
  EXPECT_EQ(fit.Gate(30, adopt), FitGate::kOpen);
  fit.DoneAt(10, 30);
  EXPECT_EQ(fit.Gate(30, adopt), FitGate::kAdopted);
  EXPECT_EQ(adopted, 7);
  EXPECT_FALSE(fit.running());
  EXPECT_EQ(fit.Gate(31, adopt), FitGate::kOpen);
}

// An abandoned fit is never adopted: its gate stays closed.
TEST(BackgroundFitTest, AnAbandonedFitKeepsItsGateClosed) {
  BackgroundFit<int> fit;
  fit.Start(1, 1, /*background=*/true, [](const std::atomic<bool>& stop) -> std::optional<int> {
    while (!stop.load()) std::this_thread::yield();
    return std::nullopt;
  });
  EXPECT_EQ(fit.Gate(2, [](int) {}), FitGate::kWait);
  fit.Abandon();
  EXPECT_FALSE(fit.Finished());
  EXPECT_EQ(fit.Gate(2, [](int) {}), FitGate::kWait);
  fit.Start(3, 1, true, [](const std::atomic<bool>&) -> std::optional<int> { return 1; });
  EXPECT_EQ(fit.status()->started_sequence, 1u) << "none starts once abandoned";
}

}  // namespace
}  // namespace mercato::core
