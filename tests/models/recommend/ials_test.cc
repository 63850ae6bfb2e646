#include "models/recommend/ials.h"

#include <Eigen/Dense>
#include <string>

#include "core/bytes.h"
#include "gtest/gtest.h"

namespace mercato::core {
namespace {

IalsOptions Small() {
  IalsOptions o;
  o.dim = 4;
  o.unobserved_weight = 4;
  o.decay_half_life_days = 0;
  return o;
}

// Users 0..5 like items 0..2 (even users) or 3..5 (odd users).
IalsState TwoTastes() {
  IalsState s(Small());
  int64_t t = 1000;
  for (uint32_t u = 0; u < 6; ++u) {
    for (uint32_t i = 0; i < 3; ++i) s.Observe(u, (u % 2) * 3 + i, EventType::kView, t++);
  }
  return s;
}

double Score(const IalsFrozen& f, uint32_t user, uint32_t item, int dim) {
  return Eigen::Map<const Eigen::VectorXf>(f.users.Row(user), dim)
      .dot(Eigen::Map<const Eigen::VectorXf>(f.items.Row(item), dim));
}

TEST(IalsTest, TrainingSeparatesTwoTastes) {
  IalsState s = TwoTastes();
  ASSERT_TRUE(s.Train(8));
  const IalsFrozen f = s.Freeze();
  for (uint32_t u = 0; u < 6; ++u) {
    const uint32_t own = (u % 2) * 3, other = 3 - own;
    EXPECT_GT(Score(f, u, own, 4), Score(f, u, other, 4) + 0.3) << "user " << u;
  }
}

TEST(IalsTest, FoldInMovesOnlyTheRowsOfTheEvent) {
  IalsState s = TwoTastes();
  ASSERT_TRUE(s.Train(4));
  const IalsFrozen before = s.Freeze();
  s.TakeChangedItems();
  s.Observe(0, 4, EventType::kPurchase, 5000);
  const IalsFrozen after = s.Freeze();
  EXPECT_NE(Score(after, 0, 4, 4), Score(before, 0, 4, 4));
  EXPECT_EQ(std::vector<float>(after.users.Row(1), after.users.Row(1) + 4),
            std::vector<float>(before.users.Row(1), before.users.Row(1) + 4));
  EXPECT_EQ(s.TakeChangedItems(), std::vector<uint32_t>{4});
  ASSERT_TRUE(*after.histories.Row(0));
  EXPECT_EQ((*after.histories.Row(0))->back().flags, kSeen | kPurchased);
}

TEST(IalsTest, ForgetUserLeavesNoTraceOfTheUser) {
  IalsState s = TwoTastes();
  s.ForgetUser(2);
  const IalsFrozen f = s.Freeze();
  EXPECT_FALSE(*f.histories.Row(2) && !(*f.histories.Row(2))->empty());
  for (int d = 0; d < 4; ++d) EXPECT_EQ(f.users.Row(2)[d], 0);
  EXPECT_EQ(s.ItemSupport(0), 2u);  // users 0 and 4 still bought item 0
}

TEST(IalsTest, EncodeDecodeIsExactAndTrainingIsDeterministic) {
  IalsState a = TwoTastes(), b = TwoTastes();
  ASSERT_TRUE(a.Train(3));
  ASSERT_TRUE(b.Train(3));
  std::string ea, eb;
  ByteWriter wa(&ea), wb(&eb);
  a.Freeze().Encode(wa);
  b.Freeze().Encode(wb);
  EXPECT_EQ(ea, eb);
  IalsState c(Small());
  ByteReader r(ea);
  c.Decode(r, /*counts=*/true);
  ASSERT_TRUE(r.status().ok());
  EXPECT_TRUE(r.done());
  std::string ec;
  ByteWriter wc(&ec);
  c.Freeze().Encode(wc);
  EXPECT_EQ(ec, ea);
}

// Other event weights and half-lives re-weigh a pair from its counts:
// exactly for events at one time, and by their common age otherwise.
TEST(IalsTest, ReweighingFollowsTheEventCounts) {
  IalsOptions from = Small();
  from.decay_half_life_days = 90;
  IalsOptions to = from;
  to.weights[static_cast<int>(EventType::kView)] = 2;
  to.weights[static_cast<int>(EventType::kPurchase)] = 4;
  IalsState s(from);
  const int64_t day = 24 * 3600 * 1000;
  s.Observe(0, 1, EventType::kView, day);
  s.Observe(0, 1, EventType::kView, day);
  s.Observe(0, 1, EventType::kPurchase, day);  // 1 + 1 + 8 at one time
  s.Observe(0, 2, EventType::kView, day);
  s.Observe(0, 2, EventType::kView, 91 * day);  // 1/2 + 1: three quarters kept
  const History& h = *s.history(0);
  EXPECT_EQ(h[0].counts[static_cast<int>(EventType::kView) - 1], 2);
  EXPECT_EQ(h[0].counts[static_cast<int>(EventType::kPurchase) - 1], 1);
  EXPECT_FLOAT_EQ(h[0].confidence, 10);
  EXPECT_FLOAT_EQ(h[1].confidence, 1.5);
  EXPECT_FLOAT_EQ(Reweighed(h[0], from, to), 2 + 2 + 4);
  EXPECT_FLOAT_EQ(Reweighed(h[1], from, to), 2 * 2 * 0.75);
  to.decay_half_life_days = 45;  // the common age (41.5 days) decays twice as fast
  EXPECT_FLOAT_EQ(Reweighed(h[1], from, to), 2 * 2 * 0.75 * 0.75);
  to.decay_half_life_days = 0;
  EXPECT_FLOAT_EQ(Reweighed(h[1], from, to), 2 * 2);
  EXPECT_EQ(Reweighed(h[1], from, from), h[1].confidence);

  s.SetHyperparameters(to);
  EXPECT_FLOAT_EQ(s.history(0)->at(0).confidence, 8);
  EXPECT_EQ(s.options().weights, to.weights);
  const IalsState back = s.Restarted(from, [](uint32_t, const Interaction&) { return true; });
  EXPECT_FLOAT_EQ(back.history(0)->at(0).confidence, 10);
}

TEST(IalsTest, AStoppedTrainingReportsIt) {
  IalsState s = TwoTastes();
  const std::atomic<bool> stop{true};
  EXPECT_FALSE(s.Train(8, &stop));
}

}  // namespace
}  // namespace mercato::core
