#include "testing/demo_shop.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace mercato::core {
namespace {

TEST(DemoShopTest, SameSeedSameShop) {
  DemoShopOptions o;
  o.users = 300;
  o.days = 30;
  const DemoShop a = GenerateDemoShop(o), b = GenerateDemoShop(o);
  EXPECT_EQ(a.events, b.events);
  o.seed = 7;
  EXPECT_NE(GenerateDemoShop(o).events, a.events);
}

// Demand items add their own purchases, in time order with ids of their
// own, and leave every other event as it was.
TEST(DemoShopTest, DemandItemsLeaveTheRestOfTheShopAsItWas) {
  DemoShopOptions o;
  o.users = 300;
  o.days = 30;
  const DemoShop plain = GenerateDemoShop(o);
  o.demand_items = 8;
  const DemoShop with = GenerateDemoShop(o);
  std::vector<Event> others;
  absl::flat_hash_set<std::string> ids;
  int demand_purchases = 0;
  for (size_t i = 0; i < with.events.size(); ++i) {
    const Event& e = with.events[i];
    ASSERT_TRUE(ids.insert(e.event_id).second) << e.event_id;
    if (i > 0) ASSERT_LE(with.events[i - 1].timestamp_ms, e.timestamp_ms);
    if (e.item_id.rfind("demand", 0) == 0) {
      ++demand_purchases;
    } else {
      others.push_back(e);
    }
  }
  EXPECT_EQ(others, plain.events);
  EXPECT_GT(demand_purchases, 30 * 4);  // the smooth ones sell daily
  EXPECT_EQ(with.items.size(), plain.items.size() + 8);
  EXPECT_EQ(with.items.back().item.category_path.back(), "demand");
}

TEST(DemoShopTest, EventsAreOrderedUniqueAndCarryThePlantedTruth) {
  const DemoShop shop = GenerateDemoShop(DemoShopOptions());
  absl::flat_hash_set<std::string> ids;
  absl::flat_hash_map<std::string, int> orders_by_fraud;
  for (size_t i = 0; i < shop.events.size(); ++i) {
    const Event& e = shop.events[i];
    ASSERT_TRUE(ids.insert(e.event_id).second) << e.event_id;
    if (i > 0) {
      ASSERT_LE(shop.events[i - 1].timestamp_ms, e.timestamp_ms);
    }
    if (e.type == EventType::kPurchase) {
      ASSERT_GT(e.unit_price, 0);
      ASSERT_FALSE(e.order_id.empty());
    }
  }
  int fraud = 0, labels = 0;
  for (const DemoOrder& o : shop.orders) fraud += o.fraud != DemoFraud::kNone;
  for (const Event& e : shop.events) labels += e.type == EventType::kFraudLabel;
  EXPECT_GT(fraud, 100);
  EXPECT_LT(fraud, static_cast<int>(shop.orders.size()) / 5);
  // Labels arrive a week after their order: the last week's are still pending.
  EXPECT_GT(labels, fraud * 8 / 10);
  EXPECT_LE(labels, fraud);
  for (const DemoItem& it : shop.items) {
    EXPECT_LT(it.elasticity, 0);
    EXPECT_GT(it.base_price, 0);
  }
  // Planted segments behave differently: champions buy far more than
  // hibernating customers.
  absl::flat_hash_map<std::string, DemoSegment> segment;
  for (const DemoUser& u : shop.users) segment[u.user_id] = u.segment;
  int purchases[kNumDemoSegments] = {};
  for (const Event& e : shop.events) {
    auto it = segment.find(e.user_id);
    if (e.type == EventType::kPurchase && it != segment.end()) ++purchases[static_cast<int>(it->second)];
  }
  EXPECT_GT(purchases[static_cast<int>(DemoSegment::kChampion)],
            5 * purchases[static_cast<int>(DemoSegment::kHibernating)]);
}

}  // namespace
}  // namespace mercato::core
