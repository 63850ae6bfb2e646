#include "models/recommend/recommend_model.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "testing/demo_shop.h"
#include "testing/model_feed.h"
#include "models/recommend/hnsw_index.h"
#include "gtest/gtest.h"

namespace mercato::core {
namespace {

DemoShopOptions SmallShop() {
  DemoShopOptions o;
  o.users = 1500;
  o.items = 400;
  o.days = 90;
  return o;
}

void FeedCatalogue(RecommendModel& model, const DemoShop& shop) {
  int n = 0;
  for (const DemoItem& it : shop.items) {
    model.Apply(ItemUpdateEvent(it.item, shop.events.front().timestamp_ms, absl::StrCat("c", n++)));
  }
}

std::shared_ptr<const RecommendView> ViewOf(RecommendModel& model) {
  return std::dynamic_pointer_cast<const RecommendView>(model.Publish());
}

std::vector<std::string> Ids(const std::vector<Recommendation>& recs) {
  std::vector<std::string> ids;
  for (const Recommendation& r : recs) ids.push_back(r.item_id);
  return ids;
}

Event Interaction(EventType type, std::string user, std::string item, int64_t t,
                  std::string order = "") {
  Event e;
  e.type = type;
  e.user_id = std::move(user);
  e.item_id = std::move(item);
  e.timestamp_ms = t;
  e.order_id = std::move(order);
  return e;
}

// Train on everything before the last 20 days; for every user who then buys
// an item not bought before, a hit is one such item in the top 10 (already
// bought items excluded).
TEST(RecommendModelTest, PersonalModelBeatsPopularityOnPlantedTastes) {
  const DemoShop shop = GenerateDemoShop(SmallShop());
  const int64_t cutoff = SmallShop().start_ms + int64_t{70} * 24 * 3600 * 1000;
  RecommendModel model;
  FeedCatalogue(model, shop);
  absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>> bought, later;
  for (const Event& e : shop.events) {
    if (e.timestamp_ms < cutoff) {
      model.Apply(e);
      if (e.type == EventType::kPurchase) bought[e.user_id].insert(e.item_id);
    } else if (e.type == EventType::kPurchase &&
               !(bought.contains(e.user_id) && bought[e.user_id].contains(e.item_id))) {
      later[e.user_id].insert(e.item_id);
    }
  }
  model.RetrainNow();
  auto view = ViewOf(model);
  int users = 0, personal_hits = 0, popular_hits = 0;
  for (const auto& [user, items] : later) {
    if (!bought.contains(user)) continue;
    ++users;
    RecommendQuery q;
    q.user_id = user;
    q.count = 10;
    q.filter.exclude_purchased = true;
    auto personal = view->Recommend(q);
    ASSERT_TRUE(personal.ok()) << personal.status();
    ASSERT_EQ(personal->size(), 10u);
    EXPECT_EQ(personal->front().source, RecommendSource::kPersonal);

    q.user_id = "nobody";
    q.filter.exclude_item_ids.assign(bought[user].begin(), bought[user].end());
    auto popular = view->Recommend(q);
    ASSERT_TRUE(popular.ok());
    EXPECT_EQ(popular->front().source, RecommendSource::kPopular);
    const auto hit = [&](const std::vector<Recommendation>& recs) {
      return std::any_of(recs.begin(), recs.end(),
                         [&](const Recommendation& r) { return items.contains(r.item_id); });
    };
    personal_hits += hit(*personal);
    popular_hits += hit(*popular);
  }
  ASSERT_GT(users, 300);
  const double hr = static_cast<double>(personal_hits) / users;
  const double hr_popular = static_cast<double>(popular_hits) / users;
  std::printf("HR@10 over %d users: iALS %.3f, popularity %.3f\n", users, hr, hr_popular);
  EXPECT_GE(hr, 2 * hr_popular);
}

// Background retrains that finish at different moments give the same
// factors: each is adopted at its log position.
TEST(RecommendModelTest, SameEventsGiveTheSameFactorsBitForBit) {
  DemoShopOptions o = SmallShop();
  o.users = 400;
  o.days = 40;
  const DemoShop shop = GenerateDemoShop(o);
  RecommendOptions options;
  options.retrain_every = 5000;
  options.adopt_after_events = 500;
  RecommendModel eager(options), lazy(options);
  const auto feed = [&shop](RecommendModel& model) {
    testkit::ModelFeed feed(model);
    for (const DemoItem& it : shop.items) {
      feed.Apply(ItemUpdateEvent(it.item, shop.events.front().timestamp_ms, "c"));
    }
    for (const Event& e : shop.events) feed.Apply(e);
  };
  feed(eager);
  SetFitDelayForTesting(absl::Milliseconds(200));
  feed(lazy);
  SetFitDelayForTesting(absl::ZeroDuration());
  const auto retrains = [](RecommendModel& m) {
    for (const auto& [name, value] : ViewOf(m)->Counts()) {
      if (name == "retrains") return value;
    }
    return uint64_t{0};
  };
  ASSERT_GE(retrains(eager), 2u);
  ASSERT_EQ(retrains(eager), retrains(lazy));
  EXPECT_EQ(ViewOf(eager)->Encode(), ViewOf(lazy)->Encode());
  auto a = ViewOf(eager), b = ViewOf(lazy);
  for (const DemoUser& u : shop.users) {
    const float* x = a->UserFactors(u.user_id);
    const float* y = b->UserFactors(u.user_id);
    ASSERT_EQ(x == nullptr, y == nullptr);
    if (x) {
      ASSERT_EQ(0, std::memcmp(x, y, sizeof(float) * a->dim())) << u.user_id;
    }
  }
  for (const DemoItem& it : shop.items) {
    const float* x = a->ItemFactors(it.item.item_id);
    const float* y = b->ItemFactors(it.item.item_id);
    ASSERT_EQ(x == nullptr, y == nullptr);
    if (x) {
      ASSERT_EQ(0, std::memcmp(x, y, sizeof(float) * a->dim())) << it.item.item_id;
    }
  }
  EXPECT_EQ(a->Encode(), b->Encode());
}

TEST(RecommendModelTest, CheckpointRestoresTheSameAnswersAndLearning) {
  DemoShopOptions o = SmallShop();
  o.users = 300;
  o.days = 30;
  const DemoShop shop = GenerateDemoShop(o);
  RecommendModel model;
  FeedCatalogue(model, shop);
  const size_t half = shop.events.size() / 2;
  for (size_t i = 0; i < half; ++i) model.Apply(shop.events[i]);
  model.RetrainNow();
  RecommendModel restored;
  ASSERT_TRUE(restored.Decode(ViewOf(model)->Encode()).ok());
  for (size_t i = half; i < shop.events.size(); ++i) {
    model.Apply(shop.events[i]);
    restored.Apply(shop.events[i]);
  }
  auto a = ViewOf(model), b = ViewOf(restored);
  EXPECT_EQ(a->Encode(), b->Encode());
  RecommendQuery q;
  q.user_id = shop.users[7].user_id;
  q.count = 20;
  q.explain = true;
  auto x = a->Recommend(q), y = b->Recommend(q);
  ASSERT_TRUE(x.ok() && y.ok());
  ASSERT_EQ(Ids(*x), Ids(*y));
  for (size_t i = 0; i < x->size(); ++i) EXPECT_EQ((*x)[i].score, (*y)[i].score);

  RecommendModel broken;
  std::string bytes = a->Encode();
  bytes.resize(bytes.size() / 2);
  EXPECT_FALSE(broken.Decode(bytes).ok());
}

// A shop of two tastes: "a" items and "b" items, each bought by its own
// crowd. A user of the "a" crowd who buys "b" items sees "b" items next.
class TwoTastesTest : public testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 20; ++i) {
      for (const char* c : {"a", "b"}) {
        Item item;
        item.item_id = absl::StrCat(c, i);
        item.category_path = {"root", c};
        item.price = 10 + i;
        item.in_stock = i % 5 != 0;
        model_.Apply(ItemUpdateEvent(item, 0, ""));
      }
    }
    int64_t t = 1'700'000'000'000;
    for (int u = 0; u < 60; ++u) {
      const char* taste = u % 2 ? "a" : "b";
      for (int k = 0; k < 8; ++k) {
        const std::string item = absl::StrCat(taste, (u * 7 + k * 3) % 20);
        model_.Apply(Interaction(EventType::kView, absl::StrCat("u", u), item, t += 1000));
        if (k % 2 == 0) {
          model_.Apply(Interaction(EventType::kPurchase, absl::StrCat("u", u), item, t += 1000,
                                   absl::StrCat("o", u, "-", k / 4)));
        }
      }
    }
    now_ = t;
    model_.RetrainNow();
  }
  int Count(const std::vector<Recommendation>& recs, char taste) {
    return static_cast<int>(std::count_if(recs.begin(), recs.end(), [&](const Recommendation& r) {
      return r.item_id[0] == taste;
    }));
  }
  RecommendModel model_;
  int64_t now_ = 0;
};

TEST_F(TwoTastesTest, AFreshPurchaseIsExcludedAndShiftsTheTaste) {
  RecommendQuery q;
  q.user_id = "u1";  // an "a" user
  q.count = 10;
  q.filter.exclude_purchased = true;
  // The best "b" item for u1, by re-ranking every "b" item.
  const auto best_b = [&] {
    RecommendQuery b = q;
    b.count = 1;
    for (int i = 0; i < 20; ++i) b.candidate_item_ids.push_back(absl::StrCat("b", i));
    auto r = ViewOf(model_)->Recommend(b);
    EXPECT_TRUE(r.ok() && r->size() == 1);
    return r->front().score;
  };
  auto before = ViewOf(model_)->Recommend(q);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(Count(*before, 'a'), 10);
  const double b_before = best_b();
  EXPECT_LT(b_before, 0.05 * before->front().score);

  for (int k = 0; k < 6; ++k) {
    model_.Apply(Interaction(EventType::kPurchase, "u1", absl::StrCat("b", k), now_ + k, "fresh"));
  }
  auto after = ViewOf(model_)->Recommend(q);
  ASSERT_TRUE(after.ok());
  for (const Recommendation& r : *after) {
    for (int k = 0; k < 6; ++k) EXPECT_NE(r.item_id, absl::StrCat("b", k));
  }
  EXPECT_GE(Count(*after, 'b'), 1);
  // The best "b" item went from nothing to the league of u1's favourites.
  EXPECT_GT(best_b(), 0.5 * after->front().score) << "before: " << b_before;
}

TEST_F(TwoTastesTest, FiltersAndCandidates) {
  auto view = ViewOf(model_);
  RecommendQuery q;
  q.user_id = "u1";
  q.count = 50;
  q.filter.categories = {"b"};
  q.filter.min_price = 12;
  q.filter.max_price = 20;
  q.filter.in_stock_only = true;
  q.filter.exclude_item_ids = {"b3"};
  auto recs = view->Recommend(q);
  ASSERT_TRUE(recs.ok());
  ASSERT_FALSE(recs->empty());
  for (const Recommendation& r : *recs) {
    EXPECT_EQ(r.item_id[0], 'b') << r.item_id;
    const int i = std::stoi(r.item_id.substr(1));
    EXPECT_TRUE(i >= 2 && i <= 10 && i % 5 != 0 && i != 3) << r.item_id;
  }

  RecommendQuery c;
  c.user_id = "u1";
  c.count = 10;
  c.candidate_item_ids = {"b1", "a1", "zzz", "a2"};
  auto ranked = view->Recommend(c);
  ASSERT_TRUE(ranked.ok());
  std::vector<std::string> ids = Ids(*ranked);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"a1", "a2", "b1"}));
  EXPECT_EQ((*ranked)[2].item_id, "b1");

  RecommendQuery bad;
  bad.user_id = "u1";
  bad.filter.categories = {"a", "nope"};
  auto status = view->Recommend(bad).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("filter.categories[1]"), std::string::npos) << status;
}

TEST_F(TwoTastesTest, ColdStartChainNamesItsSources) {
  auto view = ViewOf(model_);
  RecommendQuery q;
  q.user_id = "stranger";
  q.count = 5;
  auto popular = view->Recommend(q);
  ASSERT_TRUE(popular.ok());
  ASSERT_EQ(popular->size(), 5u);
  for (const Recommendation& r : *popular) EXPECT_EQ(r.source, RecommendSource::kPopular);

  q.filter.categories = {"a"};
  auto category = view->Recommend(q);
  ASSERT_TRUE(category.ok());
  ASSERT_EQ(category->size(), 5u);
  for (const Recommendation& r : *category) {
    EXPECT_EQ(r.source, RecommendSource::kCategoryPopular);
    EXPECT_EQ(r.item_id[0], 'a');
  }

  RecommendQuery session;
  session.context_item_ids = {"b1", "b4", "b7"};
  session.count = 5;
  session.filter.exclude_seen = true;
  auto folded = view->Recommend(session);
  ASSERT_TRUE(folded.ok());
  ASSERT_EQ(folded->size(), 5u);
  for (const Recommendation& r : *folded) {
    EXPECT_EQ(r.source, RecommendSource::kSession);
    EXPECT_EQ(r.item_id[0], 'b') << r.item_id;
    EXPECT_NE(r.item_id, "b1");
  }

  // More than the model can give: filled from popularity, never empty.
  RecommendQuery many;
  many.user_id = "u1";
  many.count = 1000;
  auto all = view->Recommend(many);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 40u);
}

TEST_F(TwoTastesTest, ExplanationsComeFromTheUsersHistory) {
  RecommendQuery q;
  q.user_id = "u1";
  q.count = 5;
  q.explain = true;
  q.filter.exclude_purchased = true;
  auto recs = ViewOf(model_)->Recommend(q);
  ASSERT_TRUE(recs.ok());
  ASSERT_FALSE(recs->empty());
  const std::shared_ptr<const RecommendView> view = ViewOf(model_);
  for (const Recommendation& r : *recs) {
    ASSERT_FALSE(r.because.empty()) << r.item_id;
    double previous = 2;
    for (const auto& [item, share] : r.because) {
      EXPECT_EQ(item[0], 'a');  // u1 saw only "a" items
      EXPECT_GT(share, 0);
      EXPECT_LE(share, previous);  // largest first
      previous = share;
    }
  }
}

TEST_F(TwoTastesTest, SimilarItemsStayWithinTheTaste) {
  auto similar = ViewOf(model_)->SimilarItems("a3", 5, {});
  ASSERT_TRUE(similar.ok());
  ASSERT_EQ(similar->size(), 5u);
  for (const Recommendation& r : *similar) {
    EXPECT_EQ(r.item_id[0], 'a');
    EXPECT_NE(r.item_id, "a3");
    EXPECT_EQ(r.source, RecommendSource::kSimilar);
    EXPECT_LE(r.score, 1.0 + 1e-6);
  }
  EXPECT_EQ(ViewOf(model_)->SimilarItems("nope", 5, {}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RecommendModelTest, BoughtTogetherReportsSupportConfidenceAndLift) {
  RecommendModel model;
  // 10 orders: x+y in 6 of them, x+z in 2, z alone in 2.
  for (int o = 0; o < 10; ++o) {
    const std::string order = absl::StrCat("o", o);
    const std::string user = absl::StrCat("u", o);
    std::vector<std::string> lines;
    if (o < 6) lines = {"x", "y"};
    else if (o < 8) lines = {"x", "z"};
    else lines = {"z"};
    for (const std::string& item : lines) {
      model.Apply(Interaction(EventType::kPurchase, user, item, 1000 + o, order));
    }
    // A repeated line does not count twice.
    model.Apply(Interaction(EventType::kPurchase, user, lines[0], 1000 + o, order));
  }
  auto view = ViewOf(model);
  auto pairs = view->BoughtTogether("x", 10, 0);
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0].item_id, "y");  // lift (6/8)/(6/10) = 1.25
  EXPECT_EQ((*pairs)[0].support, 6u);
  EXPECT_DOUBLE_EQ((*pairs)[0].confidence, 0.75);
  EXPECT_DOUBLE_EQ((*pairs)[0].lift, 1.25);
  EXPECT_EQ((*pairs)[1].item_id, "z");  // (2/8)/(4/10) = 0.625
  EXPECT_EQ((*pairs)[1].support, 2u);
  EXPECT_DOUBLE_EQ((*pairs)[1].lift, 0.625);
  auto strict = view->BoughtTogether("x", 10, 3);
  ASSERT_TRUE(strict.ok());
  ASSERT_EQ(strict->size(), 1u);
  EXPECT_EQ((*strict)[0].item_id, "y");
  EXPECT_EQ(view->BoughtTogether("nope", 10, 0).status().code(), absl::StatusCode::kNotFound);
}

// A catalogue above the HNSW threshold below.
DemoShopOptions IndexedShop() {
  DemoShopOptions o = SmallShop();
  o.users = 600;
  o.items = 2000;
  o.days = 40;
  return o;
}

RecommendOptions IndexedOptions() {
  RecommendOptions options;
  options.hnsw_min_items = 100;
  options.background = false;
  return options;
}

void TrainOn(RecommendModel& model, const DemoShop& shop) {
  FeedCatalogue(model, shop);
  for (const Event& e : shop.events) model.Apply(e);
  model.RetrainNow();
}

TEST(RecommendModelTest, HnswAgreesWithTheExactScan) {
  const DemoShop shop = GenerateDemoShop(IndexedShop());
  RecommendModel model(IndexedOptions());
  TrainOn(model, shop);
  auto view = ViewOf(model);
  ASSERT_TRUE(view->has_index());
  double hits = 0, total = 0;
  for (int u = 0; u < 200; ++u) {
    const float* q = view->UserFactors(shop.users[u].user_id);
    if (!q) continue;
    const std::vector<uint32_t> exact = view->TopItems(q, 10, true);
    const std::vector<uint32_t> approx = view->TopItems(q, 10, false);
    for (uint32_t i : approx) hits += std::count(exact.begin(), exact.end(), i);
    total += static_cast<double>(exact.size());
  }
  ASSERT_GT(total, 1000);
  std::printf("HNSW recall@10 vs exact: %.4f\n", hits / total);
  EXPECT_GE(hits / total, 0.95);
}

DemoShopOptions TinyShop() {
  DemoShopOptions o = SmallShop();
  o.users = 300;
  o.days = 20;
  return o;
}

// A retrain every 1,000 interactions that never finishes.
RecommendOptions EndlessRetrains() {
  RecommendOptions options;
  options.ials.epochs = 1000000;
  options.retrain_every = 1000;
  return options;
}

uint64_t Count(const RecommendView& view, std::string_view name) {
  for (const auto& [n, value] : view.Counts()) {
    if (n == name) return value;
  }
  ADD_FAILURE() << "no count " << name;
  return 0;
}

// A running retrain is visible in the views: since when and from which log
// position.
TEST(RecommendModelTest, ViewsShowTheRunningRetrainAndWhereItStarted) {
  const DemoShop shop = GenerateDemoShop(TinyShop());
  RecommendModel model(EndlessRetrains());
  FeedCatalogue(model, shop);
  EXPECT_FALSE(ViewOf(model)->Running());
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  uint64_t sequence = 1000000;
  for (const Event& e : shop.events) {
    Event logged = e;
    logged.sequence = ++sequence;
    model.Apply(logged);
    if (ViewOf(model)->Running()) break;
  }
  const std::optional<RunningRetrain> running = ViewOf(model)->Running();
  ASSERT_TRUE(running);
  EXPECT_EQ(running->started_sequence, sequence);  // the event that made it due
  EXPECT_GE(running->started_ms, before_ms);
  model.Abandon();
}

TEST(RecommendModelTest, CheckpointKeepsTheHnswIndex) {
  const DemoShop shop = GenerateDemoShop(IndexedShop());
  // Without catalogue features: the items no one bought would share their
  // category's prior and outrank the new item's own row.
  RecommendOptions options = IndexedOptions();
  options.item_features = false;
  // A light unobserved weight, so that the new item's one purchase gives it a
  // row long enough to rank it among its own top 10.
  options.ials.unobserved_weight = 128;
  options.ials.regularization = 0.05;
  RecommendModel model(options);
  TrainOn(model, shop);
  auto view = ViewOf(model);
  ASSERT_TRUE(view->has_index());
  // Fold-in moves rows after the index was built: the index stays as it was
  // and the moved rows are searched exactly beside it, a new item included.
  const uint64_t indexed = Count(*view, "hnsw_items");
  EXPECT_EQ(Count(*view, "hnsw_stale_items"), 0u);
  model.Apply(Interaction(EventType::kPurchase, shop.users[0].user_id, "brand-new",
                          shop.events.back().timestamp_ms));
  auto moved = ViewOf(model);
  EXPECT_EQ(Count(*moved, "hnsw_items"), indexed);
  EXPECT_GE(Count(*moved, "hnsw_stale_items"), 1u);
  const float* fresh = moved->ItemFactors("brand-new");
  ASSERT_NE(fresh, nullptr);
  const uint32_t brand_new = static_cast<uint32_t>(moved->num_items() - 1);
  const std::vector<uint32_t> exact = moved->TopItems(fresh, 10, true);
  ASSERT_NE(std::find(exact.begin(), exact.end(), brand_new), exact.end());
  const std::vector<uint32_t> approx = moved->TopItems(fresh, 10, false);
  EXPECT_NE(std::find(approx.begin(), approx.end(), brand_new), approx.end());

  RecommendModel restored(options);
  ASSERT_TRUE(restored.Decode(view->Encode()).ok());
  auto again = ViewOf(restored);
  // Searchable at once: the index came with the checkpoint, no rebuild.
  ASSERT_TRUE(again->has_index());
  int users = 0;
  for (int u = 0; u < 200; ++u) {
    const float* q = view->UserFactors(shop.users[u].user_id);
    if (!q) continue;
    ++users;
    EXPECT_EQ(again->TopItems(q, 10, false), view->TopItems(q, 10, false)) << "user " << u;
  }
  EXPECT_GT(users, 150);
}

}  // namespace
}  // namespace mercato::core
