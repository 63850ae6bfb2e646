#include "models/recommend/item_index.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace mercato::core {
namespace {

// The item with the highest inner product with `query`, by exact scan.
uint32_t Best(const IalsState& s, const float* query) {
  uint32_t best = 0;
  float best_score = -1e30f;
  for (uint32_t i = 0; i < s.num_items(); ++i) {
    if (s.ItemSupport(i) == 0) continue;
    float score = 0;
    for (int d = 0; d < 8; ++d) score += s.item_row(i)[d] * query[d];
    if (score > best_score) best_score = score, best = i;
  }
  return best;
}

bool Contains(const std::vector<uint32_t>& v, uint32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

IalsState Trained(int items) {
  IalsOptions o;
  o.dim = 8;
  IalsState s(o);
  for (int u = 0; u < items; ++u) {
    s.Observe(u, u % items, 1, kSeen, 1000 + u);
    s.Observe(u, (u * 7 + 3) % items, 1, kSeen, 1000 + u);
  }
  EXPECT_TRUE(s.Train(2));
  s.TakeChangedItems();
  return s;
}

TEST(ItemIndexTest, WantedFromItsThresholdOnly) {
  EXPECT_FALSE(ItemIndex(8, {}, 0).Wanted(1000000));
  EXPECT_FALSE(ItemIndex(8, {}, 100).Wanted(99));
  EXPECT_TRUE(ItemIndex(8, {}, 100).Wanted(100));
}

TEST(ItemIndexTest, BuildIndexesEveryItemWithFactorsAndStops) {
  const IalsState s = Trained(200);
  ItemIndex keeper(8, {}, 1);
  const std::atomic<bool> go{false}, stop{true};
  const std::shared_ptr<HnswIndex> index = keeper.Build(s, go);
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->size(), 200u);
  const std::vector<uint32_t> found = index->Search(s.item_row(17), 10);
  EXPECT_GE(found.size(), 10u);
  for (uint32_t item : found) EXPECT_LT(item, 200u);
  EXPECT_EQ(keeper.Build(s, stop), nullptr);
}

TEST(ItemIndexTest, SyncUpsertsTheRowsFoldInMoved) {
  IalsState s = Trained(200);
  ItemIndex keeper(8, {}, 1);
  const std::atomic<bool> go{false};
  keeper.Adopt(keeper.Build(s, go));
  // A new item gets factors by fold-in: it is searchable after Sync.
  s.Observe(5, 200, 4, kSeen, 5000);
  keeper.Sync(s);
  EXPECT_EQ(keeper.current()->size(), 201u);
  EXPECT_TRUE(Contains(keeper.current()->Search(s.item_row(200), 1), Best(s, s.item_row(200))));
}

TEST(ItemIndexTest, RestoreDecodesTheSavedIndexOrRebuildsIt) {
  const IalsState s = Trained(200);
  ItemIndex keeper(8, {}, 1);
  const std::atomic<bool> go{false};
  keeper.Adopt(keeper.Build(s, go));
  const std::string saved = keeper.Encode();
  ASSERT_FALSE(saved.empty());

  ItemIndex restored(8, {}, 1);
  restored.Restore(saved, s, 200, 200);
  ASSERT_NE(restored.current(), nullptr);
  EXPECT_EQ(restored.current()->size(), 200u);
  EXPECT_FALSE(restored.Poll());  // nothing was being built

  ItemIndex rebuilt(8, {}, 1);
  rebuilt.Restore("damaged", s, 200, 200);
  EXPECT_EQ(rebuilt.current(), nullptr);  // exact scan until the build is done
  for (int i = 0; i < 500 && !rebuilt.Poll(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(rebuilt.current(), nullptr);
  EXPECT_EQ(rebuilt.current()->size(), 200u);

  ItemIndex unwanted(8, {}, 1000);
  unwanted.Restore(saved, s, 200, 200);
  EXPECT_EQ(unwanted.current(), nullptr);
  EXPECT_FALSE(unwanted.Poll());
}

}  // namespace
}  // namespace mercato::core
