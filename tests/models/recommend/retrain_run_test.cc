#include "models/recommend/retrain_run.h"

#include <string>

#include "core/bytes.h"
#include "gtest/gtest.h"

namespace mercato::core {
namespace {

IalsOptions Small() {
  IalsOptions o;
  o.dim = 4;
  o.decay_half_life_days = 0;
  return o;
}

IalsState Shop() {
  IalsState s(Small());
  for (uint32_t u = 0; u < 8; ++u) {
    for (uint32_t i = 0; i < 3; ++i) s.Observe(u, (u + i) % 6, EventType::kView, 1000 + u * 10 + i);
  }
  return s;
}

std::string Encoded(IalsState& s) {
  std::string out;
  ByteWriter w(&out);
  s.Freeze().Encode(w);
  return out;
}

// What a retrain started at an event and adopted later gives: the trained
// copy with the events after the start replayed, whenever the thread ends.
std::string RunWithTail(bool background) {
  IalsState live = Shop();
  RetrainRun run;
  run.Start(/*position=*/10, live, /*epochs=*/3, /*adopt_after=*/5, background, std::nullopt,
            nullptr);
  EXPECT_TRUE(run.running());
  EXPECT_EQ(run.status()->started_sequence, 10u);
  // Events 11..14 are applied live and recorded.
  live.Observe(1, 5, EventType::kAddToCart, 2000);
  run.Observe(1, 5, EventType::kAddToCart, 2000);
  live.ForgetUser(3);
  run.Forget(3);
  for (uint64_t seq = 11; seq < 15; ++seq) EXPECT_EQ(run.Gate(seq, nullptr), FitGate::kOpen);
  // Event 15 is due: it waits until the fit has finished, then adopts.
  std::optional<TrainedFactors> adopted;
  FitGate gate;
  while ((gate = run.Gate(15, [&](TrainedFactors t) { adopted = std::move(t); })) ==
         FitGate::kWait) {
  }
  EXPECT_EQ(gate, FitGate::kAdopted);
  EXPECT_FALSE(run.running());
  EXPECT_TRUE(adopted.has_value());
  return adopted ? Encoded(adopted->state) : "";
}

TEST(RetrainRunTest, TheTailIsReplayedOntoTheResultWhateverTheThreadTiming) {
  const std::string inline_run = RunWithTail(false);
  SetFitDelayForTesting(absl::Milliseconds(30));
  const std::string slow = RunWithTail(true);
  SetFitDelayForTesting(absl::ZeroDuration());
  EXPECT_FALSE(inline_run.empty());
  EXPECT_EQ(inline_run, slow);
  // And the result is the trained copy plus the tail, in that order.
  IalsState expected = Shop();
  ASSERT_TRUE(expected.Train(3));
  expected.Observe(1, 5, EventType::kAddToCart, 2000);
  expected.ForgetUser(3);
  EXPECT_EQ(Encoded(expected), inline_run);
}

TEST(RetrainRunTest, NothingIsRecordedWhileIdleAndAnAbandonedRunIsNeverAdopted) {
  IalsState live = Shop();
  RetrainRun run;
  run.Observe(0, 0, EventType::kView, 1);  // idle: ignored
  EXPECT_FALSE(run.running());
  run.Abandon();
  run.Start(1, live, 3, 1, /*background=*/true, std::nullopt, nullptr);
  EXPECT_FALSE(run.running());  // abandoned: none starts
  bool adopted = false;
  EXPECT_EQ(run.Gate(100, [&](TrainedFactors) { adopted = true; }), FitGate::kOpen);
  EXPECT_FALSE(adopted);
}

TEST(RetrainRunTest, TheIndexIsBuiltOverTheTrainedState) {
  IalsState live = Shop();
  RetrainRun run;
  size_t built_items = 0;
  run.Start(1, live, 2, 1, false, std::nullopt,
            [&](const IalsState& state, const std::atomic<bool>&) {
              built_items = state.num_items();
              return std::make_shared<HnswIndex>(4, HnswOptions{}, 16);
            });
  std::shared_ptr<const HnswIndex> index;
  run.Finish([&](TrainedFactors t) { index = t.index; });
  EXPECT_NE(index, nullptr);
  EXPECT_EQ(built_items, 6u);
}

}  // namespace
}  // namespace mercato::core
