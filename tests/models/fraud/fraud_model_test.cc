#include "models/fraud/fraud_model.h"

#include <gtest/gtest.h>

#include <algorithm>

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
        explained += !s.reasons.empty() && planted.contains(std::string(s.reasons[0].feature));
      }
    }
    feed.Apply(FraudView::RecordEvent(order, s.features));
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
  feed.Apply(FraudView::RecordEvent(first, scored.features));
  EXPECT_EQ(scored.features.dense[16], 1);  // first order
  // More orders change alice's state ...
  for (int i = 2; i <= 4; ++i) {
    const FraudOrder o = Order(absl::StrCat("o", i), t0 + i * 60000, 900);
    feed.Apply(FraudView::RecordEvent(o, ViewOf(model)->Score(o).features));
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

  // A label for an order never scored is counted and harms nothing.
  label.order_id = "ghost";
  feed.Apply(label);
  auto counts = ViewOf(model)->Counts();
  EXPECT_NE(std::find(counts.begin(), counts.end(),
                      std::pair<std::string, uint64_t>("unknown_order_labels", 1)),
            counts.end());
  EXPECT_EQ(ViewOf(model)->Score(first).probability, after);
}

uint64_t CountOf(const FraudView& view, const std::string& name) {
  for (const auto& [n, v] : view.Counts()) {
    if (n == name) return v;
  }
  return 0;
}

// The first label trains; the same label again is counted and changes
// nothing; a different one is a correction, trained toward the new value.
TEST(FraudModelTest, RepeatedLabelsAreCountedAndChangedOnesCorrect) {
  FraudModel model;
  testkit::ModelFeed feed(model);
  const int64_t t0 = 1704067200000;
  const FraudOrder order = Order("o1", t0, 700);
  feed.Apply(FraudView::RecordEvent(order, ViewOf(model)->Score(order).features));
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

  feed.Apply(FraudView::RecordEvent(risky, r.features));
  feed.Apply(Label("b", 1, t0 + 1000));
  const std::string bytes = ViewOf(model)->Encode();
  FraudModel restored;
  testkit::ModelFeed restored_feed(restored);
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), bytes);
  EXPECT_EQ(ViewOf(restored)->Score(risky).probability, ViewOf(model)->Score(risky).probability);
  EXPECT_FALSE(restored.Decode(bytes.substr(0, 100)).ok());
}

}  // namespace
}  // namespace mercato::core
