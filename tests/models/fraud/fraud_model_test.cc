#include "models/fraud/fraud_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "testing/demo_shop.h"
#include "testing/model_feed.h"

namespace mercato::core {
namespace {

std::shared_ptr<const FraudView> ViewOf(FraudModel& model) {
  return std::dynamic_pointer_cast<const FraudView>(model.Publish());
}

// Area under the ROC curve: the chance a random fraud outscores a random
// legitimate order.
double Auc(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end());
  double rank_sum = 0, positives = 0;
  for (size_t i = 0; i < scored.size(); ++i) {
    if (scored[i].second) rank_sum += i + 1, positives += 1;
  }
  const double negatives = scored.size() - positives;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

TEST(FraudModelTest, LearnsThePlantedFraudFromDelayedLabels) {
  const DemoShop shop = GenerateDemoShop(DemoShopOptions());
  FraudOptions options;
  options.maturity_ms = 14LL * 24 * 3600 * 1000;
  FraudModel model(options);
  testkit::ModelFeed feed(model);
  std::vector<Event> labels;
  for (const Event& e : shop.events) {
    if (e.type == EventType::kFraudLabel) labels.push_back(e);
  }
  size_t next_label = 0;
  // Orders of the last 30 days are scored by a model trained on the labels
  // that had arrived by then.
  const int64_t evaluate_from = shop.orders.back().timestamp_ms - 30LL * 24 * 3600 * 1000;
  std::vector<std::pair<double, bool>> before_labels, evaluated;
  const absl::flat_hash_set<std::string> planted = {
      kFraudFeatureNames[4],  kFraudFeatureNames[8],  kFraudFeatureNames[9],
      kFraudFeatureNames[11], kFraudFeatureNames[12], kFraudFeatureNames[13],
      kFraudFeatureNames[1],  kFraudFeatureNames[3],  "shipping x IP country"};
  int caught = 0, explained = 0;
  auto view = ViewOf(model);
  for (size_t i = 0; i < shop.orders.size(); ++i) {
    const DemoOrder& d = shop.orders[i];
    while (next_label < labels.size() && labels[next_label].timestamp_ms <= d.timestamp_ms) {
      feed.Apply(labels[next_label++]);
    }
    if (i % 50 == 0) view = ViewOf(model);
    const FraudOrder order = ToFraudOrder(d);
    const FraudScore s = view->Score(order);
    const bool fraud = d.fraud != DemoFraud::kNone;
    if (next_label == 0) before_labels.emplace_back(s.probability, fraud);
    if (d.timestamp_ms >= evaluate_from) {
      evaluated.emplace_back(s.probability, fraud);
      if (fraud && s.decision != FraudDecision::kApprove) {
        ++caught;
        explained += !s.reasons.empty() && planted.contains(s.reasons[0].feature);
      }
    }
    feed.Apply(FraudView::RecordEvent(order, s));
  }
  const double auc = Auc(evaluated);
  RecordProperty("auc", absl::StrCat(auc));
  RecordProperty("prior_auc", absl::StrCat(Auc(before_labels)));
  RecordProperty("explained", absl::StrCat(explained, " of ", caught));
  EXPECT_GE(auc, 0.95);
  ASSERT_GT(caught, 20);
  EXPECT_GE(explained, caught * 8 / 10) << explained << " of " << caught;
  // The shipped priors alone already separate the planted fraud.
  EXPECT_GE(Auc(before_labels), 0.8);
}

FraudOrder Order(const std::string& id, int64_t t, double amount) {
  FraudOrder o;
  o.order_id = id;
  o.user_id = "alice";
  o.payment_fingerprint = "card-a";
  o.device_id = "dev-a";
  o.shipping_address_hash = "addr-a";
  o.billing_country = o.shipping_country = o.ip_country = "DE";
  o.currency = "EUR";
  o.amount = amount;
  o.account_created_ms = t - 400LL * 24 * 3600 * 1000;
  o.timestamp_ms = t;
  return o;
}

Event Label(const std::string& order_id, double value, int64_t t) {
  Event label;
  label.type = EventType::kFraudLabel;
  label.order_id = order_id;
  label.value = value;
  label.timestamp_ms = t;
  return label;
}

TEST(FraudModelTest, LabelsTrainOnScoringTimeFeatures) {
  FraudModel model;
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  const FraudOrder first = Order("o1", t0, 50);
  const FraudScore scored = ViewOf(model)->Score(first);
  feed.Apply(FraudView::RecordEvent(first, scored));
  EXPECT_EQ(scored.features.dense[16], 1);  // first order
  // More orders change alice's state ...
  for (int i = 2; i <= 4; ++i) {
    const FraudOrder o = Order(absl::StrCat("o", i), t0 + i * 60000, 900);
    feed.Apply(FraudView::RecordEvent(o, ViewOf(model)->Score(o)));
  }
  auto view = ViewOf(model);
  const FraudScore now = view->Score(Order("o5", t0 + 300000, 50));
  EXPECT_EQ(now.features.dense[16], 0);
  EXPECT_EQ(now.features.dense[5], 4);  // orders in the last hour
  // ... but o1 keeps what was known when it was scored, also when scored
  // again, and that is what its label trains on.
  ASSERT_EQ(view->StoredFeatures("o1"), scored.features);
  const FraudScore again = view->Score(first);
  EXPECT_TRUE(again.rescored);
  EXPECT_EQ(again.features, scored.features);
  EXPECT_EQ(again.probability, scored.probability);

  Event label = Label("o1", 1, t0 + 400000);
  feed.Apply(label);
  const double after = ViewOf(model)->Score(first).probability;
  EXPECT_GT(after, scored.probability);  // learned from o1's own features

  // A label for an order not scored (yet) is held and harms nothing.
  label.order_id = "ghost";
  feed.Apply(label);
  auto counts = ViewOf(model)->Counts();
  EXPECT_NE(std::find(counts.begin(), counts.end(), std::pair<std::string, uint64_t>("early_labels", 1)),
            counts.end());
  EXPECT_EQ(ViewOf(model)->Score(first).probability, after);
}

uint64_t CountOf(const FraudView& view, const std::string& name) {
  for (const auto& [n, v] : view.Counts()) {
    if (n == name) return v;
  }
  return 0;
}

// Score answers at once and records the order in the background, so a
// label sent right after the answer can reach the log before the record:
// it waits for the record and trains on it then. Labels whose record never
// comes are dropped beyond a bound and counted as unknown.
TEST(FraudModelTest, ALabelBeforeItsOrdersRecordTrainsWhenTheRecordComes) {
  const int64_t t0 = 1704067200000;
  const FraudOrder order = Order("o1", t0, 700);
  FraudModel in_order, label_first;
  testkit::ModelFeed a(in_order), b(label_first);
  const FraudScore scored = ViewOf(in_order)->Score(order);
  a.Apply(FraudView::RecordEvent(order, scored));
  a.Apply(Label("o1", 1, t0 + 1000));
  b.Apply(Label("o1", 1, t0 + 1000));
  EXPECT_EQ(CountOf(*ViewOf(label_first), "early_labels"), 1u);
  const std::string held = ViewOf(label_first)->Encode();
  FraudModel restored;
  ASSERT_TRUE(restored.Decode(held).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), held);  // held labels survive a checkpoint
  b.Apply(FraudView::RecordEvent(order, scored));
  const auto view = ViewOf(label_first);
  EXPECT_EQ(CountOf(*view, "early_labels"), 0u);
  EXPECT_EQ(CountOf(*view, "labels"), 1u);
  EXPECT_EQ(view->Score(Order("o2", t0 + 2000, 700)).probability,
            ViewOf(in_order)->Score(Order("o2", t0 + 2000, 700)).probability);

  FraudModel flooded;
  testkit::ModelFeed c(flooded);
  for (int i = 0; i < 10005; ++i) c.Apply(Label(absl::StrCat("ghost", i), 0, t0));
  EXPECT_EQ(CountOf(*ViewOf(flooded), "early_labels"), 10000u);
  EXPECT_EQ(CountOf(*ViewOf(flooded), "unknown_order_labels"), 5u);
}

// The first label trains; the same label again is counted and changes
// nothing; a different one is a correction, trained toward the new value.
TEST(FraudModelTest, RepeatedLabelsAreCountedAndChangedOnesCorrect) {
  FraudModel model;
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  const FraudOrder order = Order("o1", t0, 700);
  feed.Apply(FraudView::RecordEvent(order, ViewOf(model)->Score(order)));
  Event label = Label("o1", 1, t0 + 1000);
  feed.Apply(label);
  const double fraud = ViewOf(model)->Score(order).probability;
  EXPECT_EQ(ViewOf(model)->LabelOf("o1"), 1.0);

  label.event_id = "again";
  feed.Apply(label);
  auto view = ViewOf(model);
  EXPECT_EQ(view->Score(order).probability, fraud);
  EXPECT_EQ(CountOf(*view, "labels"), 1u);
  EXPECT_EQ(CountOf(*view, "repeated_labels"), 1u);
  EXPECT_EQ(CountOf(*view, "changed_labels"), 0u);

  label.event_id = "corrected";
  label.value = 0;
  feed.Apply(label);
  view = ViewOf(model);
  EXPECT_LT(view->Score(order).probability, fraud);
  EXPECT_EQ(view->LabelOf("o1"), 0.0);
  EXPECT_EQ(CountOf(*view, "labels"), 1u);
  EXPECT_EQ(CountOf(*view, "changed_labels"), 1u);

  // The counts and the label survive a checkpoint.
  FraudModel restored;
  testkit::ModelFeed restored_feed(restored);
  ASSERT_TRUE(restored.Decode(view->Encode()).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), view->Encode());
  EXPECT_EQ(ViewOf(restored)->LabelOf("o1"), 0.0);
}

TEST(FraudModelTest, PriorsScoreBeforeAnyLabelAndCheckpointsKeepScores) {
  FraudModel model;
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  auto view = ViewOf(model);
  const double usual = view->Score(Order("a", t0, 60)).probability;
  FraudOrder risky = Order("b", t0, 1800);
  risky.account_created_ms = t0 - 600000;
  risky.shipping_country = risky.ip_country = "NG";
  const FraudScore r = view->Score(risky);
  EXPECT_LT(usual, 0.1);
  EXPECT_GT(r.probability, 0.5);
  EXPECT_NE(r.decision, FraudDecision::kApprove);
  ASSERT_FALSE(r.reasons.empty());
  EXPECT_GT(r.reasons[0].contribution, 0);

  feed.Apply(FraudView::RecordEvent(risky, r));
  feed.Apply(Label("b", 1, t0 + 1000));
  const std::string bytes = ViewOf(model)->Encode();
  FraudModel restored;
  testkit::ModelFeed restored_feed(restored);
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), bytes);
  EXPECT_EQ(ViewOf(restored)->Score(risky).probability, ViewOf(model)->Score(risky).probability);
  EXPECT_FALSE(restored.Decode(bytes.substr(0, 100)).ok());
}

// Scores `orders` in order, each recorded as the server records it, and
// labels each of the first `train` right after it; returns the AUC over the
// rest, scored by the model the labels made.
double TrainThenAuc(const DemoShop& shop, const std::vector<FraudOrder>& orders, size_t train) {
  FraudModel model;
  testkit::ModelFeed feed(model);
  for (const DemoItem& it : shop.items) {
    feed.Apply(ItemUpdateEvent(it.item, shop.events.front().timestamp_ms, ""));
  }
  for (size_t i = 0; i < train; ++i) {
    const FraudScore s = ViewOf(model)->Score(orders[i]);
    feed.Apply(FraudView::RecordEvent(orders[i], s));
    feed.Apply(Label(orders[i].order_id, shop.orders[i].fraud != DemoFraud::kNone ? 1 : 0,
                     orders[i].timestamp_ms));
  }
  const auto view = ViewOf(model);
  std::vector<std::pair<double, bool>> held_out;
  for (size_t i = train; i < orders.size(); ++i) {
    held_out.emplace_back(view->Score(orders[i]).probability,
                          shop.orders[i].fraud != DemoFraud::kNone);
  }
  return Auc(held_out);
}

// Fraud that only the shop's attributes and the basket show: learned from the
// labels of the first 80% of orders; without attributes and line items the
// built-in features cannot tell it.
TEST(FraudModelTest, LearnsFraudThatOnlyAttributesAndTheBasketShow) {
  DemoShopOptions o;
  o.users = 800;
  o.days = 90;
  o.fraud_in_attributes = true;
  const DemoShop shop = GenerateDemoShop(o);
  std::vector<FraudOrder> full, bare;
  size_t frauds = 0;
  for (const DemoOrder& d : shop.orders) {
    full.push_back(ToFraudOrder(d));
    bare.push_back(full.back());
    bare.back().attributes.clear();
    bare.back().lines.clear();
    frauds += d.fraud != DemoFraud::kNone;
  }
  const size_t train = full.size() * 8 / 10;
  ASSERT_GT(frauds, 100u) << full.size() << " orders";
  const double with = TrainThenAuc(shop, full, train), without = TrainThenAuc(shop, bare, train);
  RecordProperty("auc", absl::StrCat(with));
  RecordProperty("auc_without_attributes", absl::StrCat(without));
  std::printf("%zu orders, %zu frauds: AUC %.3f with attributes and line items, %.3f without\n",
              full.size(), frauds, with, without);
  EXPECT_GE(with, 0.90);
  EXPECT_LE(without, 0.60);
}

std::optional<double> GaugeOf(const FraudView& view, const std::string& name) {
  for (const auto& [n, v] : view.Gauges()) {
    if (n == name) return v;
  }
  return std::nullopt;
}

FraudOrder WithAttributes(FraudOrder o, const std::string& method, double device_score) {
  o.attributes = {{"device_score", device_score, ""}, {"payment_method", std::nullopt, method}};
  return o;
}

// Numbers are standardised by their name's running mean and variance, texts
// hashed as name=value, the basket read against the catalogue and the
// customer's purchases; reasons name them readably, and a label trains on
// them as they were scored.
TEST(FraudModelTest, AttributesAndTheBasketAreFeaturesWithReadableReasons) {
  FraudOptions options;
  options.reasons = 20;
  FraudModel model(options);
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  Item phone;
  phone.item_id = "phone";
  phone.price = 700;
  phone.category_path = {"Electronics", "Phones"};
  feed.Apply(ItemUpdateEvent(phone, t0, "item/phone"));
  Event bought;
  bought.type = EventType::kPurchase;
  bought.user_id = "alice";
  bought.item_id = "case";
  bought.timestamp_ms = t0;
  feed.Apply(bought);
  // Device scores 20..40 on ordinary orders, all by card.
  for (int i = 0; i < 40; ++i) {
    FraudOrder o = WithAttributes(Order(absl::StrCat("n", i), t0 + i * 1000, 50), "card",
                                  20 + i % 21);
    o.user_id = o.payment_fingerprint = o.device_id = absl::StrCat("shopper-", i);
    feed.Apply(FraudView::RecordEvent(o, ViewOf(model)->Score(o)));
    feed.Apply(Label(o.order_id, 0, o.timestamp_ms));
  }
  FraudOrder odd = WithAttributes(Order("odd", t0 + 100000, 700), "crypto", 58);
  odd.lines = {{"phone", 1, 700}, {"case", 2, 0}};
  const FraudScore scored = ViewOf(model)->Score(odd);
  ASSERT_EQ(scored.features.numeric.size(), 1u);
  EXPECT_GT(scored.features.numeric[0].z, 2.5);  // (58 - 30) / 6.1
  EXPECT_DOUBLE_EQ(scored.features.dense[18], std::log1p(3.0));  // units
  EXPECT_DOUBLE_EQ(scored.features.dense[19], std::log1p(2.0));  // distinct items
  EXPECT_DOUBLE_EQ(scored.features.dense[20], std::log1p(700.0));
  EXPECT_EQ(scored.features.dense[21], 1);  // alice bought a case before
  // 4 crosses, the shares of Electronics and Electronics > Phones (the case
  // has no catalogue entry) and payment_method=crypto.
  EXPECT_EQ(scored.features.hashed.size(), 7u);
  feed.Apply(FraudView::RecordEvent(odd, scored));
  for (int i = 0; i < 30; ++i) feed.Apply(Label("odd", i % 2 == 0 ? 1 : 0, t0 + 200000 + i));
  feed.Apply(Label("odd", 1, t0 + 300000));

  const auto view = ViewOf(model);
  EXPECT_EQ(view->StoredFeatures("odd"), scored.features);
  FraudOrder again = WithAttributes(Order("odd-2", t0 + 400000, 700), "crypto", 58);
  again.lines = odd.lines;
  const FraudScore s = view->Score(again);
  std::vector<std::string> names;
  for (const FraudReason& r : s.reasons) names.push_back(r.feature);
  EXPECT_NE(std::find(names.begin(), names.end(), "attributes.payment_method=crypto"), names.end())
      << testing::PrintToString(names);
  const bool named_score = std::any_of(names.begin(), names.end(), [](const std::string& n) {
    return n.rfind("attributes.device_score (z = ", 0) == 0;
  });
  const bool named_basket =
      std::find(names.begin(), names.end(), "basket share of Electronics") != names.end();
  EXPECT_TRUE(named_score || named_basket) << testing::PrintToString(names);
  EXPECT_GT(s.probability, scored.probability);
  EXPECT_EQ(CountOf(*view, "attribute_names"), 1u);
}

TEST(FraudModelTest, AttributeNamesAreBoundedAndHashCollisionsCounted) {
  FraudOptions options;
  options.hash_bits = 12;
  options.max_attribute_names = 2;
  FraudModel model(options);
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  for (int i = 0; i < 3000; ++i) {
    FraudOrder o = Order(absl::StrCat("o", i), t0 + i, 10);
    o.attributes = {{"a", 1.0 * i, ""}, {"b", 2.0, ""}, {"c", 3.0, ""},
                    {"email_domain", std::nullopt, absl::StrCat("d", i, ".example")}};
    feed.Apply(FraudView::RecordEvent(o, ViewOf(model)->Score(o)));
  }
  const auto view = ViewOf(model);
  EXPECT_EQ(CountOf(*view, "attribute_names"), 2u);
  EXPECT_EQ(CountOf(*view, "attribute_names_over_limit"), 3000u);  // "c" on every order
  // 3,000 domains in 4,096 buckets: about a third land on a taken one.
  EXPECT_GT(CountOf(*view, "hash_collisions"), 500u);
  EXPECT_LT(CountOf(*view, "hash_collisions"), 1500u);
  FraudModel restored(options);
  ASSERT_TRUE(restored.Decode(view->Encode()).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), view->Encode());
  // Another layout is rebuilt from the log.
  FraudModel other;
  EXPECT_TRUE(absl::IsFailedPrecondition(other.Decode(view->Encode())));
}

// The Brier score and log loss of the probabilities orders were scored with,
// over the orders whose label (or maturity) came.
TEST(FraudModelTest, CalibrationIsMeasuredOnScoredOrdersOnceLabelled) {
  FraudOptions options;
  options.maturity_ms = 1000000;
  options.calibration_window = 3;
  FraudModel model(options);
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  EXPECT_EQ(GaugeOf(*ViewOf(model), "brier_score"), 0.0);
  std::vector<double> p;
  for (int i = 0; i < 4; ++i) {
    FraudOrder o = Order(absl::StrCat("o", i), t0 + i, 100.0 * (i + 1));
    if (i == 3) o.account_created_ms = o.timestamp_ms;  // riskier
    const FraudScore s = ViewOf(model)->Score(o);
    p.push_back(s.probability);
    feed.Apply(FraudView::RecordEvent(o, s));
  }
  feed.Apply(Label("o3", 1, t0 + 10));
  feed.Apply(Label("o0", 0, t0 + 11));
  // o1 and o2 mature as legitimate; the window keeps the last three.
  feed.Apply(Label("ghost", 1, t0 + 2000000));
  const auto view = ViewOf(model);
  const auto f = [](double q) { return static_cast<double>(static_cast<float>(q)); };
  const double brier = ((f(p[0]) - 0) * (f(p[0]) - 0) + f(p[1]) * f(p[1]) + f(p[2]) * f(p[2])) / 3;
  EXPECT_NEAR(*GaugeOf(*view, "brier_score"), brier, 1e-12);
  const double log_loss = -(std::log(1 - f(p[0])) + std::log(1 - f(p[1])) + std::log(1 - f(p[2]))) / 3;
  EXPECT_NEAR(*GaugeOf(*view, "log_loss"), log_loss, 1e-9);
  EXPECT_EQ(CountOf(*view, "calibration_orders"), 3u);
}

TEST(FraudModelTest, ExpectedLossDecidesAndSaysSo) {
  FraudOptions options;
  options.rule = FraudRule::kExpectedLoss;
  options.review_loss = 5;
  options.decline_loss = 50;
  FraudModel model(options);
  const auto view = ViewOf(model);
  const int64_t t0 = 1704067200000;
  const FraudScore small = view->Score(Order("a", t0, 20));
  EXPECT_EQ(small.decision, FraudDecision::kApprove);
  EXPECT_EQ(small.decided_by.rfind("expected loss ", 0), 0u) << small.decided_by;
  EXPECT_NE(small.decided_by.find("< review cost 5"), std::string::npos) << small.decided_by;
  FraudOrder big = Order("b", t0, 900000);
  const FraudScore s = view->Score(big);
  ASSERT_GE(s.probability * 900000, 50);
  EXPECT_EQ(s.decision, FraudDecision::kDecline);
  EXPECT_NE(s.decided_by.find(">= decline cost 50"), std::string::npos) << s.decided_by;
  FraudModel thresholds;
  const FraudScore t = ViewOf(thresholds)->Score(Order("c", t0, 20));
  EXPECT_EQ(t.decided_by.rfind("probability ", 0), 0u) << t.decided_by;
  // The figures as printf writes them.
  char shown[64];
  std::snprintf(shown, sizeof shown, "probability %.3f < ", t.probability);
  EXPECT_EQ(t.decided_by.rfind(shown, 0), 0u) << t.decided_by;
  std::snprintf(shown, sizeof shown, "expected loss %.2f >= ", s.probability * 900000);
  EXPECT_EQ(s.decided_by.rfind(shown, 0), 0u) << s.decided_by;
}

}  // namespace
}  // namespace mercato::core
