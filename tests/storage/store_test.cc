#include "storage/store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "storage/codec.h"

namespace mercato::storage {
namespace {

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "store-test-XXXXXX").string();
    dir_ = mkdtemp(templ.data());
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    StoreOptions o;
    o.path = dir_;
    auto s = Store::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  static core::Event Ev(const std::string& id, const std::string& user = "u") {
    core::Event e;
    e.event_id = id;
    e.type = core::EventType::kPurchase;
    e.user_id = user;
    e.item_id = "i";
    e.timestamp_ms = 1;
    e.quantity = 2;
    e.unit_price = 3.5;
    return e;
  }
  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, AppendNumbersEventsAndDropsDuplicates) {
  auto r = store_->Append({Ev("a"), Ev("b"), Ev("a")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sequences, (std::vector<uint64_t>{1, 2, 0}));
  EXPECT_EQ(r->accepted, 2u);
  EXPECT_EQ(r->duplicates, 1u);
  r = store_->Append({Ev("b"), Ev("c")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sequences, (std::vector<uint64_t>{0, 3}));
  EXPECT_EQ(r->last_sequence, 3u);
  std::vector<core::Event> out;
  ASSERT_TRUE(store_->Read(2, 10, &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].event_id, "b");
  EXPECT_EQ(out[0].sequence, 2u);
  EXPECT_EQ(out[1].event_id, "c");
  core::Event expected = Ev("c");
  expected.sequence = 3;
  EXPECT_EQ(out[1], expected);
}

TEST_F(StoreTest, LogAndIdempotencySurviveReopen) {
  ASSERT_TRUE(store_->Append({Ev("a"), Ev("b")}).ok());
  Reopen();
  EXPECT_EQ(store_->LastSequence(), 2u);
  auto r = store_->Append({Ev("a"), Ev("z")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->sequences, (std::vector<uint64_t>{0, 3}));
}

TEST_F(StoreTest, ConcurrentAppendsGetDenseUniqueSequences) {
  constexpr int kThreads = 8, kCalls = 50, kPerCall = 20;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> got(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < kCalls; ++c) {
        std::vector<core::Event> events;
        for (int i = 0; i < kPerCall; ++i) events.push_back(Ev(absl::StrCat(t, "-", c, "-", i)));
        auto r = store_->Append(events);
        ASSERT_TRUE(r.ok());
        got[t].insert(got[t].end(), r->sequences.begin(), r->sequences.end());
      }
    });
  }
  for (auto& t : threads) t.join();
  absl::flat_hash_set<uint64_t> all;
  for (const auto& g : got) {
    for (uint64_t s : g) ASSERT_TRUE(all.insert(s).second) << s;
  }
  const uint64_t n = kThreads * kCalls * kPerCall;
  EXPECT_EQ(all.size(), n);
  EXPECT_EQ(store_->LastSequence(), n);
  for (uint64_t s = 1; s <= n; ++s) ASSERT_TRUE(all.contains(s));
}

TEST_F(StoreTest, CheckpointIsAtomicAndNewestWins) {
  ASSERT_TRUE(store_->Append({Ev("a"), Ev("b")}).ok());
  auto none = store_->ReadCheckpoint();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(store_->WriteCheckpoint(1, {{"m1", "one"}, {"m2", "two"}}).ok());
  ASSERT_TRUE(store_->WriteCheckpoint(2, {{"m1", "uno"}}).ok());
  Reopen();
  auto cp = store_->ReadCheckpoint();
  ASSERT_TRUE(cp.ok());
  ASSERT_TRUE(cp->has_value());
  EXPECT_EQ((*cp)->sequence, 2u);
  EXPECT_EQ((*cp)->states, (std::map<std::string, std::string>{{"m1", "uno"}}));
}

TEST_F(StoreTest, LargeStatesRoundTripAndShrink) {
  ASSERT_TRUE(store_->Append({Ev("a")}).ok());
  // States over several chunks (of 1 MiB), one of them empty.
  std::string big(3 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 13);
  const std::string medium = big.substr(7, (1 << 20) + 1);
  ASSERT_TRUE(store_->WriteCheckpoint(1, {{"z", medium}, {"a", big}, {"empty", ""}}).ok());
  Reopen();
  auto cp = store_->ReadCheckpoint();
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_TRUE(cp->has_value());
  EXPECT_EQ((*cp)->states,
            (std::map<std::string, std::string>{{"a", big}, {"empty", ""}, {"z", medium}}));
  // A smaller state replaces a larger one; what it leaves is not read.
  ASSERT_TRUE(store_->WriteCheckpoint(1, {{"a", medium}}).ok());
  cp = store_->ReadCheckpoint();
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ((*cp)->states, (std::map<std::string, std::string>{{"a", medium}}));
  // No working files are left beside the database.
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::path(dir_) / "checkpoint.ingest"));
}

TEST_F(StoreTest, ReadsACheckpointOfTheFirstFormat) {
  // A store written by the first checkpoint format (each state whole under
  // its name): two events, then a checkpoint at sequence 2.
  store_.reset();
  std::filesystem::remove_all(dir_);
  std::filesystem::copy(std::string(MERCATO_TEST_DATA) + "/checkpoint-format1", dir_);
  Reopen();
  auto cp = store_->ReadCheckpoint();
  ASSERT_TRUE(cp.ok()) << cp.status();
  ASSERT_TRUE(cp->has_value());
  EXPECT_EQ((*cp)->sequence, 2u);
  EXPECT_EQ((*cp)->states, (std::map<std::string, std::string>{{"m1", "one"},
                                                              {"m2", std::string(3000, 'x')}}));
  // The next checkpoint is written in the current format and replaces it.
  ASSERT_TRUE(store_->WriteCheckpoint(2, {{"m2", "two"}}).ok());
  Reopen();
  cp = store_->ReadCheckpoint();
  ASSERT_TRUE(cp.ok()) << cp.status();
  EXPECT_EQ((*cp)->states, (std::map<std::string, std::string>{{"m2", "two"}}));
}

TEST_F(StoreTest, CheckpointAheadOfTheLogIsDataLoss) {
  ASSERT_TRUE(store_->WriteCheckpoint(10, {{"m", "x"}}).ok());
  EXPECT_EQ(store_->ReadCheckpoint().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(StoreTest, CatalogUpsertGetDelete) {
  core::Item item;
  item.item_id = "sku-1";
  item.category_path = {"a", "b"};
  item.price = 9.5;
  item.attributes = {{"k", "v"}};
  ASSERT_TRUE(store_->PutItems({item}).ok());
  auto got = store_->GetItem("sku-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, item);
  EXPECT_EQ(store_->GetItem("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(*store_->DeleteItem("sku-1"));
  EXPECT_FALSE(*store_->DeleteItem("sku-1"));
}

TEST(CodecTest, EventRoundTripsAndDamageIsDetected) {
  core::Event e;
  e.event_id = "id";
  e.type = core::EventType::kRating;
  e.user_id = "u";
  e.value = 4.5;
  e.timestamp_ms = 123;
  e.attributes = {{"brand", "north"}, {"colour", ""}};
  const std::string bytes = core::EncodeEvent(e);
  auto back = core::DecodeEvent(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, e);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(core::DecodeEvent(bytes.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(core::DecodeEvent(bytes + "x").ok());
  std::string wrong_version = bytes;
  wrong_version[0] = 9;
  EXPECT_EQ(core::DecodeEvent(wrong_version).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CodecTest, SequenceKeysSortInLogOrder) {
  EXPECT_LT(SequenceKey(255), SequenceKey(256));
  EXPECT_LT(SequenceKey(1), SequenceKey(uint64_t{1} << 40));
  EXPECT_EQ(DecodeSequenceKey(SequenceKey(123456789)), 123456789u);
}

TEST_F(StoreTest, MirrorWritesASharedLogWithItsCatalogueRows) {
  core::Item item;
  item.item_id = "mug";
  item.price = 9;
  item.attributes["brand"] = "north";
  std::vector<MirroredEntry> entries(3);
  entries[0].event = core::ItemUpdateEvent(item, 1, "catalog/mug/1");
  entries[0].item = EncodeItem(item);
  entries[1].event = Ev("a");
  entries[2].event.type = core::EventType::kUserDelete;
  entries[2].event.user_id = "u";
  for (uint64_t i = 0; i < 3; ++i) entries[i].event.sequence = i + 1;
  ASSERT_TRUE(store_->Mirror(entries).ok());
  EXPECT_EQ(store_->LastSequence(), 3u);
  std::vector<core::Event> read;
  ASSERT_TRUE(store_->Read(1, 10, &read).ok());
  ASSERT_EQ(read.size(), 3u);
  EXPECT_EQ(read[0], entries[0].event);  // the attributes with it
  EXPECT_EQ(read[0].attributes.at(0).second, "north");
  EXPECT_EQ(read[1], entries[1].event);
  EXPECT_EQ(store_->GetItem("mug")->attributes.at("brand"), "north");
  EXPECT_EQ(*store_->PendingErasures(), std::vector<uint64_t>{3});

  // The next entry must follow the log end; a gap or a repeat is refused
  // and writes nothing.
  std::vector<MirroredEntry> gap(1);
  gap[0].event = Ev("b");
  gap[0].event.sequence = 5;
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Mirror(gap)));
  gap[0].event.sequence = 3;
  EXPECT_TRUE(absl::IsFailedPrecondition(store_->Mirror(gap)));
  EXPECT_EQ(store_->LastSequence(), 3u);
  std::vector<MirroredEntry> removal(1);
  removal[0].event = ItemDeleteEvent("mug");
  removal[0].event.sequence = 4;
  ASSERT_TRUE(store_->Mirror(removal).ok());
  EXPECT_TRUE(absl::IsNotFound(store_->GetItem("mug").status()));
}

TEST_F(StoreTest, ABackupOpensAsTheStoreItWasTakenFrom) {
  ASSERT_TRUE(store_->Append({Ev("a"), Ev("b")}).ok());
  core::Item item;
  item.item_id = "mug";
  ASSERT_TRUE(store_->PutItems({item}).ok());
  ASSERT_TRUE(store_->WriteCheckpoint(2, {{"m", "state"}}).ok());
  const std::string folder = dir_ + "-backup";
  absl::StatusOr<uint64_t> end = store_->Backup(folder);
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(*end, 3u);
  EXPECT_FALSE(store_->Backup(folder).ok()) << "a backup never overwrites one";
  StoreOptions o;
  o.path = folder;
  absl::StatusOr<std::unique_ptr<Store>> copy = Store::Open(o);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->LastSequence(), 3u);
  EXPECT_TRUE((*copy)->GetItem("mug").ok());
  EXPECT_EQ((*(*copy)->ReadCheckpoint())->states.at("m"), "state");
  // The original's duplicates stay duplicates in the copy.
  EXPECT_EQ((*copy)->Append({Ev("a")})->duplicates, 1u);
  copy->reset();
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace mercato::storage
