#include "models/recommend/co_purchase.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace mercato::core {
namespace {

const auto kAll = [](uint32_t) { return true; };

// Four orders: {0,1}, {0,1,2}, {0}, {3}; lines arrive one by one.
CoPurchase FourOrders() {
  CoPurchase c;
  c.Resize(4);
  for (uint32_t i : {0u, 1u}) c.Add("o1", i);
  for (uint32_t i : {0u, 1u, 2u}) c.Add("o2", i);
  c.Add("o3", 0);
  c.Add("", 3);
  return c;
}

TEST(CoPurchaseTest, SupportConfidenceAndLiftOfEachRule) {
  CoPurchase c = FourOrders();
  const CoPurchaseView v = c.Freeze();
  EXPECT_EQ(v.orders, 4u);
  const std::vector<CoPurchaseRule> rules = v.Rules(0, 10, 1, kAll);
  ASSERT_EQ(rules.size(), 2u);
  // 0 => 1: in 2 of the 3 orders with 0; 1 is in 2 of 4 orders: lift 4/3.
  EXPECT_EQ(rules[0].other, 1u);
  EXPECT_EQ(rules[0].support, 2u);
  EXPECT_DOUBLE_EQ(rules[0].confidence, 2.0 / 3);
  EXPECT_DOUBLE_EQ(rules[0].lift, (2.0 / 3) / (2.0 / 4));
  // 0 => 2: 1 of 3; 2 in 1 of 4: lift 4/3 as well, less support: second.
  EXPECT_EQ(rules[1].other, 2u);
  EXPECT_DOUBLE_EQ(rules[1].lift, (1.0 / 3) / (1.0 / 4));
  // min_support, count and the item filter.
  EXPECT_EQ(v.Rules(0, 10, 2, kAll).size(), 1u);
  EXPECT_EQ(v.Rules(0, 1, 1, kAll).size(), 1u);
  EXPECT_EQ(v.Rules(0, 10, 1, [](uint32_t other) { return other != 1; }).size(), 1u);
  EXPECT_TRUE(v.Rules(3, 10, 1, kAll).empty());
}

TEST(CoPurchaseTest, ARepeatedLineCountsOnce) {
  CoPurchase c;
  c.Resize(2);
  c.Add("o1", 0);
  c.Add("o1", 1);
  c.Add("o1", 1);
  const CoPurchaseView v = c.Freeze();
  EXPECT_EQ(v.orders, 1u);
  EXPECT_EQ(*v.orders_with.Row(1), 1u);
  EXPECT_EQ(v.Rules(0, 10, 1, kAll)[0].support, 1u);
}

TEST(CoPurchaseTest, OnlyTheLatestOrdersStayOpen) {
  CoPurchase c;
  c.Resize(2);
  c.Add("first", 0);
  for (size_t i = 0; i < kOpenOrders; ++i) c.Add(absl::StrCat("o", i), 0);
  // "first" was closed: a late line of it is a new order, not a pair.
  c.Add("first", 1);
  CoPurchaseView v = c.Freeze();
  EXPECT_TRUE(v.Rules(0, 10, 1, kAll).empty());
  EXPECT_EQ(v.open_orders->size(), kOpenOrders);
  // The last order is still open.
  c.Add(absl::StrCat("o", kOpenOrders - 1), 1);
  v = c.Freeze();
  EXPECT_EQ(v.Rules(1, 10, 1, kAll).size(), 1u);
}

TEST(CoPurchaseTest, ViewsShareOpenOrdersUntilTheyChange) {
  CoPurchase c = FourOrders();
  const CoPurchaseView a = c.Freeze();
  const CoPurchaseView b = c.Freeze();
  EXPECT_EQ(a.open_orders.get(), b.open_orders.get());
  c.Add("o4", 2);
  const CoPurchaseView d = c.Freeze();
  EXPECT_NE(d.open_orders.get(), b.open_orders.get());
  EXPECT_EQ(b.open_orders->size(), 3u);  // the earlier view is unchanged
  EXPECT_EQ(d.open_orders->size(), 4u);
}

}  // namespace
}  // namespace mercato::core
