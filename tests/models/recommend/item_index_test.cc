#include "models/recommend/item_index.h"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace mercato::core {
namespace {

constexpr int kDim = 8;

// Item rows and supports as the recommendation model keeps them.
struct Rows {
  explicit Rows(size_t n) : rows(kDim), support(1) {
    rows.Resize(n);
    support.Resize(n);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (size_t i = 0; i < n; ++i) {
      for (int d = 0; d < kDim; ++d) rows.MutableRow(i)[d] = normal(rng);
      *support.MutableRow(i) = 1;
    }
  }
  void Move(uint32_t item, float to) {
    std::fill_n(rows.MutableRow(item), kDim, to);
  }
  ItemIndex::RowOf RowOf() const {
    return [this](uint32_t i) { return *support.Row(i) > 0 ? rows.Row(i) : nullptr; };
  }
  RowBlockMatrix<float> rows;
  RowBlockMatrix<uint32_t> support;
};

std::vector<uint32_t> Stale(ItemIndex& index) { return *index.Freeze().stale; }

std::string Encoded(const ItemIndexView& view) {
  std::string out;
  ByteWriter w(&out);
  view.Encode(w);
  return out;
}

const std::atomic<bool> kGo{false};

TEST(ItemIndexTest, WantedFromItsThresholdOnly) {
  EXPECT_FALSE(ItemIndex(kDim, {}, 0).Wanted(1000000));
  EXPECT_FALSE(ItemIndex(kDim, {}, 100).Wanted(99));
  EXPECT_TRUE(ItemIndex(kDim, {}, 100).Wanted(100));
}

TEST(ItemIndexTest, BuildIndexesEveryItemWithARowAndStops) {
  Rows r(200);
  *r.support.MutableRow(3) = 0;
  ItemIndex keeper(kDim, {}, 1);
  const std::atomic<bool> stop{true};
  const ItemIndex::Built index = keeper.Build(200, r.RowOf(), kGo);
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->size(), 199u);
  const std::vector<uint32_t> found = index->Search(r.rows.Row(17), 10);
  EXPECT_GE(found.size(), 10u);
  EXPECT_EQ(found.front(), 17u);
  EXPECT_EQ(std::count(found.begin(), found.end(), 3u), 0);
  EXPECT_EQ(keeper.Build(200, r.RowOf(), stop), nullptr);
}

TEST(ItemIndexTest, ItemsMovedSinceTheIndexAreStaleOnceEach) {
  Rows r(100);
  ItemIndex keeper(kDim, {}, 1);
  keeper.Changed({4, 2});
  EXPECT_TRUE(Stale(keeper).empty());  // no index yet: nothing to be stale against
  keeper.AdoptRetrained(keeper.Build(100, r.RowOf(), kGo));
  keeper.Changed({9, 3, 9});
  keeper.Changed({3, 1});
  EXPECT_EQ(Stale(keeper), (std::vector<uint32_t>{1, 3, 9}));
  const ItemIndexView before = keeper.Freeze();
  keeper.Changed({50});
  EXPECT_EQ(before.stale->size(), 3u);  // a view keeps what it was given
  keeper.AdoptRetrained(keeper.Build(100, r.RowOf(), kGo));
  EXPECT_TRUE(Stale(keeper).empty());
}

TEST(ItemIndexTest, RebuildsOverTheRowsAtItsStartAdoptedWhereTheLogSays) {
  Rows r(64);
  ItemIndex keeper(kDim, {}, 10);
  EXPECT_FALSE(keeper.RebuildDue(1, 9));
  ASSERT_TRUE(keeper.RebuildDue(1, 64));  // wanted and none yet
  keeper.StartRebuild(100, r.rows.Freeze(), r.support.Freeze(), 5, false);
  EXPECT_TRUE(keeper.rebuilding());
  EXPECT_FALSE(keeper.RebuildDue(101, 64));
  // Rows that move after the start are stale once the rebuild is adopted.
  r.Move(7, 9.0f);
  keeper.Changed({7});
  EXPECT_EQ(keeper.Gate(104), FitGate::kOpen);
  EXPECT_EQ(keeper.Freeze().index, nullptr);
  EXPECT_EQ(keeper.Gate(105), FitGate::kAdopted);
  ASSERT_NE(keeper.Freeze().index, nullptr);
  EXPECT_EQ(keeper.Freeze().index->size(), 64u);
  EXPECT_EQ(Stale(keeper), (std::vector<uint32_t>{7}));
  EXPECT_EQ(keeper.Freeze().rebuilt_at, 105u);
  EXPECT_EQ(keeper.Freeze().rebuild_span, 5u);

  // Next: once StaleLimit(64) = 2 items are stale, and no sooner than the
  // last rebuild took (5 events) after its adoption.
  keeper.Changed({8});
  EXPECT_FALSE(keeper.RebuildDue(109, 64));
  EXPECT_TRUE(keeper.RebuildDue(110, 64));
}

TEST(ItemIndexTest, AFinishedRebuildIsAdoptedAtItsRecordOrWaitedFor) {
  Rows r(64);
  ItemIndex keeper(kDim, {}, 1);
  SetFitDelayForTesting(absl::Milliseconds(50));
  keeper.StartRebuild(10, r.rows.Freeze(), r.support.Freeze(), 1000, true);
  SetFitDelayForTesting(absl::ZeroDuration());
  EXPECT_EQ(keeper.Finished(), std::nullopt);
  keeper.DoneAt(10, 20);  // its FIT_DONE record, read in a replay
  EXPECT_EQ(keeper.Gate(19), FitGate::kOpen);
  // Due: the model's events wait until the thread is done, however long.
  while (keeper.Gate(20) == FitGate::kWait) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_NE(keeper.Freeze().index, nullptr);
  EXPECT_EQ(keeper.Freeze().rebuilt_at, 20u);
}

// Whether a superseded rebuild's thread saw its cancel in time or had
// already finished, its adoption point leaves the same state.
TEST(ItemIndexTest, ASupersededRebuildLeavesTheSameStateWhenItFinishedOrNot) {
  Rows r(64);
  std::string states[2];
  for (bool finished_first : {true, false}) {
    ItemIndex keeper(kDim, {}, 1);
    keeper.AdoptRetrained(keeper.Build(64, r.RowOf(), kGo));
    keeper.Changed({1, 2, 3});
    if (!finished_first) SetFitDelayForTesting(absl::Milliseconds(200));
    keeper.StartRebuild(10, r.rows.Freeze(), r.support.Freeze(), 10, finished_first ? false : true);
    SetFitDelayForTesting(absl::ZeroDuration());
    keeper.Supersede();  // a retrain starts: the delayed thread stops early, with nothing
    keeper.AdoptRetrained(keeper.Build(64, r.RowOf(), kGo));
    while (keeper.Gate(20) == FitGate::kWait) absl::SleepFor(absl::Milliseconds(1));
    states[finished_first] = Encoded(keeper.Freeze());
  }
  EXPECT_EQ(states[0], states[1]);
}

TEST(ItemIndexTest, ARetrainStartingSupersedesARunningRebuild) {
  Rows r(64);
  ItemIndex keeper(kDim, {}, 1);
  keeper.StartRebuild(10, r.rows.Freeze(), r.support.Freeze(), 10, false);
  keeper.Supersede();
  const ItemIndex::Built retrained = keeper.Build(64, r.RowOf(), kGo);
  keeper.AdoptRetrained(retrained);
  keeper.Changed({5});
  EXPECT_EQ(keeper.Gate(20), FitGate::kAdopted);
  EXPECT_EQ(keeper.Freeze().index, retrained);
  EXPECT_EQ(Stale(keeper), (std::vector<uint32_t>{5}));
}

TEST(ItemIndexTest, DecodeRestoresWhatEncodeSavedAndRefusesBadItems) {
  Rows r(100);
  ItemIndex keeper(kDim, {}, 1);
  keeper.AdoptRetrained(keeper.Build(100, r.RowOf(), kGo));
  keeper.Changed({42, 7});
  const std::string saved = Encoded(keeper.Freeze());

  ItemIndex restored(kDim, {}, 1);
  ByteReader in(saved);
  restored.Decode(in, 100);
  ASSERT_TRUE(in.status().ok());
  EXPECT_TRUE(in.done());
  EXPECT_EQ(Encoded(restored.Freeze()), saved);
  EXPECT_EQ(Stale(restored), (std::vector<uint32_t>{7, 42}));
  // Learning goes on alike.
  keeper.Changed({3});
  restored.Changed({3});
  EXPECT_EQ(Encoded(restored.Freeze()), Encoded(keeper.Freeze()));

  ItemIndex refused(kDim, {}, 1);
  ByteReader few(saved);
  refused.Decode(few, 40);  // stale item 42 of 40 items
  EXPECT_FALSE(few.status().ok());
  EXPECT_EQ(refused.Freeze().index, nullptr);

  // An index that does not decode is dropped, to be rebuilt.
  std::string damaged;
  ByteWriter w(&damaged);
  w.Str("damaged");
  w.Varint(1);
  w.Varint(7);
  w.Varint(0);
  w.Varint(0);
  ItemIndex dropped(kDim, {}, 1);
  ByteReader bad(damaged);
  dropped.Decode(bad, 100);
  EXPECT_TRUE(bad.status().ok());
  EXPECT_EQ(dropped.Freeze().index, nullptr);
  EXPECT_TRUE(Stale(dropped).empty());
  EXPECT_TRUE(dropped.RebuildDue(1, 100));
}

}  // namespace
}  // namespace mercato::core
