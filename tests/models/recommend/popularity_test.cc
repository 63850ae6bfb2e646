#include "models/recommend/popularity.h"

#include <cmath>

#include "gtest/gtest.h"

namespace mercato::core {
namespace {

constexpr int64_t kDay = 24 * 3600 * 1000;

ItemInfo InCategories(std::initializer_list<uint32_t> path) {
  ItemInfo info;
  size_t i = 0;
  for (uint32_t c : path) info.path[i++] = c;
  return info;
}

TEST(PopularityTest, ScoresHalveOverTheHalfLifeAndRankBestFirst) {
  Popularity p(/*half_life_days=*/7);
  p.Resize(3, 1);
  const ItemInfo none;
  const int64_t t0 = 1700000000000;
  p.Add(0, 4, t0, none);
  p.Add(1, 4, t0 + 7 * kDay, none);  // as much, a half-life later: worth twice as much today
  p.Add(2, 1, t0 + 7 * kDay, none);
  const PopularityView v = p.Freeze();
  ASSERT_EQ(v.overall->size(), 3u);
  EXPECT_EQ((*v.overall)[0].second, 1u);
  EXPECT_EQ((*v.overall)[1].second, 0u);
  EXPECT_EQ((*v.overall)[2].second, 2u);
  EXPECT_NEAR((*v.overall)[0].first * v.Scale(t0 + 7 * kDay), 4, 1e-9);
  EXPECT_NEAR((*v.overall)[1].first * v.Scale(t0 + 7 * kDay), 2, 1e-9);
}

TEST(PopularityTest, TheAnchorMovesWithoutChangingTheRanking) {
  Popularity p(/*half_life_days=*/1);
  p.Resize(2, 0);
  const ItemInfo none;
  p.Add(0, 1, 1, none);
  // 500 half-lives later: past the largest exponent, so every score is
  // rescaled to a new anchor; item 1 wins, item 0 is worth ~2^-500 of it.
  const int64_t later = 1 + 500 * kDay;
  p.Add(1, 1, later, none);
  const PopularityView v = p.Freeze();
  EXPECT_EQ(v.anchor_ms, static_cast<double>(later));
  EXPECT_EQ((*v.overall)[0].second, 1u);
  EXPECT_NEAR((*v.overall)[0].first * v.Scale(later), 1, 1e-12);
  EXPECT_TRUE(std::isfinite((*v.overall)[1].first));
}

TEST(PopularityTest, CategoriesFollowTheItemAndViewsKeepTheirLists) {
  Popularity p(7);
  p.Resize(2, 2);
  p.Add(0, 3, 1000, InCategories({0}));
  p.Add(1, 1, 1000, InCategories({0, 1}));
  const PopularityView before = p.Freeze();
  p.Move(0, InCategories({0}), InCategories({1}));
  const PopularityView after = p.Freeze();
  ASSERT_TRUE(*after.by_category.Row(1));
  EXPECT_EQ((**after.by_category.Row(1))[0].second, 0u);  // item 0 leads category 1 now
  EXPECT_EQ((**after.by_category.Row(0)).size(), 1u);     // and left category 0
  // The earlier view still shows its own lists (copy-on-write).
  EXPECT_EQ((**before.by_category.Row(0)).size(), 2u);
  EXPECT_EQ((**before.by_category.Row(1)).size(), 1u);
}

TEST(PopularityTest, ListsKeepTheTopItemsOnly) {
  Popularity p(7);
  p.Resize(kTopPopular + 10, 0);
  const ItemInfo none;
  for (uint32_t i = 0; i < kTopPopular + 10; ++i) p.Add(i, 1 + i, 1000, none);
  const PopularityView v = p.Freeze();
  ASSERT_EQ(v.overall->size(), kTopPopular);
  EXPECT_EQ(v.overall->front().second, kTopPopular + 9);
  EXPECT_EQ(v.overall->back().second, 10u);
  EXPECT_EQ(*v.scores.Row(0), 1);  // scores are kept for every item
}

}  // namespace
}  // namespace mercato::core
