#include "models/segments/segment_model.h"

#include <gtest/gtest.h>

#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "testing/demo_shop.h"
#include "testing/model_feed.h"

namespace mercato::core {
namespace {

// Adjusted Rand index of two labelings of the same points.
double AdjustedRand(const std::vector<int>& a, const std::vector<int>& b) {
  absl::flat_hash_map<int64_t, double> joint;
  absl::flat_hash_map<int, double> ra, rb;
  for (size_t i = 0; i < a.size(); ++i) {
    joint[int64_t{a[i]} * 1000 + b[i]] += 1;
    ra[a[i]] += 1;
    rb[b[i]] += 1;
  }
  auto pairs = [](double n) { return n * (n - 1) / 2; };
  double index = 0, sa = 0, sb = 0;
  for (const auto& [k, n] : joint) index += pairs(n);
  for (const auto& [k, n] : ra) sa += pairs(n);
  for (const auto& [k, n] : rb) sb += pairs(n);
  const double expected = sa * sb / pairs(static_cast<double>(a.size()));
  return (index - expected) / ((sa + sb) / 2 - expected);
}

SegmentOptions Inline() {
  SegmentOptions o;
  o.background = false;
  return o;
}

// The shop's catalogue and its customers' events. The throwaway accounts of
// the planted fraud (one order each, from "fraudster-..." users) are left
// out: they are the fraud model's planted truth, not a customer segment.
void Feed(Model& model, const DemoShop& shop) {
  testkit::ModelFeed feed(model);
  int n = 0;
  for (const DemoItem& it : shop.items) {
    feed.Apply(ItemUpdateEvent(it.item, shop.events.front().timestamp_ms, absl::StrCat("c", n++)));
  }
  for (const Event& e : shop.events) {
    if (!absl::StartsWith(e.user_id, "fraudster-")) feed.Apply(e);
  }
}

std::shared_ptr<const SegmentView> ViewOf(SegmentModel& model) {
  return std::dynamic_pointer_cast<const SegmentView>(model.Publish());
}

// The model fitted on all of `shop`; the view outlives the model.
std::shared_ptr<const SegmentView> Fitted(const DemoShop& shop) {
  SegmentModel model(Inline());
  Feed(model, shop);
  model.RefitNow();
  return ViewOf(model);
}

TEST(SegmentModelTest, RecoversThePlantedSegments) {
  const DemoShop shop = GenerateDemoShop(DemoShopOptions());
  auto view = Fitted(shop);
  ASSERT_NE(view->fit(), nullptr);
  std::vector<int> planted, found;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int>> labels_by_truth;
  for (const DemoUser& u : shop.users) {
    absl::StatusOr<CustomerSegment> s = view->Segment(u.user_id, 90, 0.1);
    if (!s.ok()) continue;  // never bought
    planted.push_back(static_cast<int>(u.segment));
    found.push_back(static_cast<int>(s->segment_id));
    ++labels_by_truth[DemoSegmentName(u.segment)][s->label];
  }
  ASSERT_GT(planted.size(), shop.users.size() * 8 / 10);
  const double ari = AdjustedRand(planted, found);
  RecordProperty("ari", absl::StrCat(ari));
  EXPECT_GE(ari, 0.8);
  // The names follow the profiles: most planted champions are called
  // champions, and so on.
  for (const char* name : {"champions", "new", "hibernating", "at_risk", "loyal"}) {
    int total = 0, same = 0;
    for (const auto& [label, n] : labels_by_truth[name]) {
      total += n;
      if (label == name) same += n;
    }
    EXPECT_GT(same, total / 2) << name;
  }
}

TEST(SegmentModelTest, CustomerValueIsValidForEveryoneAndOrdersCustomersSensibly) {
  const DemoShop shop = GenerateDemoShop(DemoShopOptions());
  auto view = Fitted(shop);
  double value_by_segment[kNumDemoSegments] = {}, alive_by_segment[kNumDemoSegments] = {};
  int n_by_segment[kNumDemoSegments] = {};
  for (const DemoUser& u : shop.users) {
    absl::StatusOr<CustomerSegment> s = view->Segment(u.user_id, 90, 0.1);
    if (!s.ok()) continue;
    ASSERT_TRUE(std::isfinite(s->customer_value)) << u.user_id;
    ASSERT_GE(s->probability_alive, 0);
    ASSERT_LE(s->probability_alive, 1);
    ASSERT_GT(s->expected_average_spend, 0);
    ASSERT_GE(s->rfm.recency_score, 1);
    ASSERT_LE(s->rfm.recency_score, 5);
    const int seg = static_cast<int>(u.segment);
    value_by_segment[seg] += s->customer_value;
    alive_by_segment[seg] += s->probability_alive;
    ++n_by_segment[seg];
  }
  auto mean = [&](double* v, DemoSegment s) {
    return v[static_cast<int>(s)] / n_by_segment[static_cast<int>(s)];
  };
  EXPECT_GT(mean(value_by_segment, DemoSegment::kChampion), 2 * mean(value_by_segment, DemoSegment::kLoyal));
  EXPECT_GT(mean(value_by_segment, DemoSegment::kLoyal), mean(value_by_segment, DemoSegment::kHibernating));
  EXPECT_GT(mean(alive_by_segment, DemoSegment::kChampion), mean(alive_by_segment, DemoSegment::kAtRisk));
}

Event Purchase(const std::string& user, const std::string& order, int64_t ts, double price) {
  Event e;
  e.type = EventType::kPurchase;
  e.user_id = user;
  e.item_id = "i";
  e.order_id = order;
  e.timestamp_ms = ts;
  e.quantity = 1;
  e.unit_price = price;
  return e;
}

TEST(SegmentModelTest, SinglePurchaseUnknownAndDeletedCustomers) {
  SegmentOptions o = Inline();
  o.min_customers = 5;
  SegmentModel model(o);
  testkit::ModelFeed feed(model);
  const int64_t day = 24LL * 3600 * 1000, t0 = 1704067200000;
  for (int u = 0; u < 30; ++u) {
    for (int k = 0; k <= u % 4; ++k) {
      feed.Apply(Purchase(absl::StrCat("u", u), absl::StrCat("o", u, "-", k), t0 + (u + 7 * k) * day, 10 + u));
    }
  }
  feed.Apply(Purchase("once", "o-once", t0 + 40 * day, 25));
  Event view;
  view.type = EventType::kView;
  view.user_id = "browser";
  view.item_id = "i";
  view.timestamp_ms = t0 + 41 * day;
  feed.Apply(view);
  model.RefitNow();
  auto v = ViewOf(model);
  absl::StatusOr<CustomerSegment> once = v->Segment("once", 90, 0.1);
  ASSERT_TRUE(once.ok()) << once.status();
  EXPECT_EQ(once->rfm.frequency, 1);
  EXPECT_EQ(once->probability_alive, 1);
  EXPECT_GT(once->expected_purchases, 0);
  EXPECT_TRUE(std::isfinite(once->customer_value));
  EXPECT_TRUE(absl::IsNotFound(v->Segment("nobody", 90, 0.1).status()));
  EXPECT_TRUE(absl::IsNotFound(v->Segment("browser", 90, 0.1).status()));

  Event erase;
  erase.type = EventType::kUserDelete;
  erase.user_id = "u3";
  erase.timestamp_ms = t0 + 42 * day;
  ASSERT_TRUE(ViewOf(model)->Segment("u3", 90, 0.1).ok());
  feed.Apply(erase);
  EXPECT_TRUE(absl::IsNotFound(ViewOf(model)->Segment("u3", 90, 0.1).status()));
}

TEST(SegmentModelTest, IdsStayStableAcrossRefitsAndCheckpoints) {
  DemoShopOptions o;
  o.users = 1500;
  const DemoShop shop = GenerateDemoShop(o);
  SegmentModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(model, shop);
  model.RefitNow();
  const SegmentFit first = *ViewOf(model)->fit();
  model.RefitNow();
  const SegmentFit second = *ViewOf(model)->fit();
  // The same data again: every id comes back, with the same name and about
  // the same customers.
  ASSERT_EQ(first.profiles.size(), second.profiles.size());
  absl::flat_hash_map<uint32_t, const SegmentProfileInfo*> by_id;
  for (const SegmentProfileInfo& p : second.profiles) by_id[p.id] = &p;
  for (const SegmentProfileInfo& p : first.profiles) {
    ASSERT_TRUE(by_id.contains(p.id)) << p.id;
    EXPECT_EQ(by_id[p.id]->label, p.label);
    EXPECT_NEAR(static_cast<double>(by_id[p.id]->size), static_cast<double>(p.size), 0.1 * p.size);
  }
  const std::string bytes = ViewOf(model)->Encode();
  SegmentModel restored(Inline());
  testkit::ModelFeed restored_feed(restored);
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), bytes);
  for (int u = 0; u < 50; ++u) {
    const std::string id = shop.users[u].user_id;
    absl::StatusOr<CustomerSegment> a = ViewOf(model)->Segment(id, 90, 0.1);
    absl::StatusOr<CustomerSegment> b = ViewOf(restored)->Segment(id, 90, 0.1);
    ASSERT_EQ(a.ok(), b.ok());
    if (!a.ok()) continue;
    EXPECT_EQ(a->segment_id, b->segment_id);
    EXPECT_EQ(a->customer_value, b->customer_value);
  }
}

// Refits in the background, the first once 100 customers bought.
// Refits in the background, adopted further along the log than the small
// shop reaches.
SegmentOptions Background() {
  SegmentOptions o;
  o.background = true;
  o.min_customers = 100;
  o.adopt_after_events = 1000000;
  return o;
}

// Feeds a 600-customer shop: the first refit starts on the way.
void FeedSmallShop(SegmentModel& model) {
  DemoShopOptions d;
  d.users = 600;
  d.days = 60;
  Feed(model, GenerateDemoShop(d));
}

// A refit is adopted exactly at its log position, however early it
// finished, and not before.
TEST(SegmentModelTest, BackgroundRefitIsAdoptedAtItsLogPosition) {
  SegmentModel model(Background());
  FeedSmallShop(model);
  const std::optional<RunningRetrain> running = ViewOf(model)->Running();
  ASSERT_TRUE(running);
  const uint64_t adopt_at = running->started_sequence + Background().adopt_after_events;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // long finished
  EXPECT_EQ(model.Gate(adopt_at - 1), FitGate::kOpen);
  EXPECT_EQ(ViewOf(model)->fit(), nullptr);
  FitGate gate;
  for (int i = 0; i < 500 && (gate = model.Gate(adopt_at)) == FitGate::kWait; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(gate, FitGate::kAdopted);
  const auto view = ViewOf(model);
  ASSERT_NE(view->fit(), nullptr);
  EXPECT_EQ(view->fit()->profiles.size(), 5u);
  EXPECT_FALSE(view->Running());
}

// Shutdown does not wait for a refit: an abandoned one ends at once (the
// model's destructor waits for it) and is never adopted: its gate stays
// closed, so the learner holds the model's later events back for good.
// (Without Abandon() this test would run a billion mini-batches.)
TEST(SegmentModelTest, AbandonedRefitEndsAtOnceAndIsNeverAdopted) {
  SegmentOptions o = Background();
  o.iterations = 1000000000;
  auto model = std::make_unique<SegmentModel>(o);
  FeedSmallShop(*model);
  const std::optional<RunningRetrain> running = ViewOf(*model)->Running();
  ASSERT_TRUE(running);
  model->Abandon();
  const uint64_t adopt_at = running->started_sequence + o.adopt_after_events;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(model->Gate(adopt_at), FitGate::kWait);
  EXPECT_EQ(ViewOf(*model)->fit(), nullptr);
  const auto start = std::chrono::steady_clock::now();
  model.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace mercato::core
