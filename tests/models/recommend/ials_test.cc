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
    for (uint32_t i = 0; i < 3; ++i) s.Observe(u, (u % 2) * 3 + i, 1, kSeen, t++);
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
  s.Observe(0, 4, 5, kSeen | kPurchased, 5000);
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
  c.Decode(r);
  ASSERT_TRUE(r.status().ok());
  EXPECT_TRUE(r.done());
  std::string ec;
  ByteWriter wc(&ec);
  c.Freeze().Encode(wc);
  EXPECT_EQ(ec, ea);
}

TEST(IalsTest, AStoppedTrainingReportsIt) {
  IalsState s = TwoTastes();
  const std::atomic<bool> stop{true};
  EXPECT_FALSE(s.Train(8, &stop));
}

}  // namespace
}  // namespace mercato::core
