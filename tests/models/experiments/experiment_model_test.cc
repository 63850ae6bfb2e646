#include "models/experiments/experiment_model.h"

#include "core/recommendation_ref.h"
#include "gtest/gtest.h"

namespace mercato::core {
namespace {

constexpr int64_t kServedMs = 1'767'225'600'000;
constexpr int64_t kHourMs = 3600 * 1000;

Event Served(std::vector<ServedCount> counts) {
  Event e;
  e.type = EventType::kRecommendationsServed;
  e.payload = EncodeServed(counts);
  return e;
}

Event Following(EventType type, const std::string& arm, int source, int64_t after_ms) {
  Event e;
  e.type = type;
  e.user_id = "u";
  e.item_id = "i";
  e.timestamp_ms = kServedMs + after_ms;
  e.quantity = 2;
  e.unit_price = 10;
  e.recommendation_id = FormatRecommendationId({arm, source, kServedMs, 7});
  return e;
}

const ArmOutcome& Outcome(ExperimentModel& model, const std::string& arm, int source) {
  static std::shared_ptr<const ModelView> view;
  view = model.Publish();
  return dynamic_cast<const ExperimentView&>(*view).outcomes().at({arm, source});
}

TEST(ExperimentModelTest, AnswersAndTheEventsWithinTheWindowCountPerArmAndSource) {
  ExperimentOptions options;
  options.attribution_window_ms = 2 * kHourMs;
  ExperimentModel model(options);
  EXPECT_TRUE(model.Apply(Served({{"default", 1, 10}, {"popular", 4, 5}})));
  EXPECT_TRUE(model.Apply(Served({{"default", 1, 2}})));
  EXPECT_TRUE(model.Apply(Following(EventType::kClick, "default", 1, 1000)));
  EXPECT_TRUE(model.Apply(Following(EventType::kView, "default", 1, kHourMs)));
  EXPECT_TRUE(model.Apply(Following(EventType::kAddToCart, "default", 1, kHourMs)));
  EXPECT_TRUE(model.Apply(Following(EventType::kPurchase, "default", 1, 2 * kHourMs)));
  EXPECT_TRUE(model.Apply(Following(EventType::kPurchase, "default", 1, 2 * kHourMs + 1)));
  EXPECT_TRUE(model.Apply(Following(EventType::kClick, "popular", 4, -1)));  // before serving
  EXPECT_FALSE(model.Apply(Following(EventType::kRating, "default", 1, 1)));
  Event plain = Following(EventType::kClick, "default", 1, 1);
  plain.recommendation_id.clear();
  EXPECT_FALSE(model.Apply(plain));

  const ArmOutcome& d = Outcome(model, "default", 1);
  EXPECT_EQ(d.answers, 12u);
  EXPECT_EQ(d.clicks, 2u);
  EXPECT_EQ(d.carts, 1u);
  EXPECT_EQ(d.purchases, 1u);
  EXPECT_EQ(d.revenue, 20);
  EXPECT_EQ(d.late, 1u);
  const ArmOutcome& p = Outcome(model, "popular", 4);
  EXPECT_EQ(p.answers, 5u);
  EXPECT_EQ(p.clicks, 0u);
  EXPECT_EQ(p.late, 1u);
}

TEST(ExperimentModelTest, CheckpointRestoresTheCountsAndRefusesDamage) {
  ExperimentModel model;
  model.Apply(Served({{"a", 1, 3}, {"b", 4, 4}}));
  model.Apply(Following(EventType::kPurchase, "b", 4, 5));
  const std::string bytes = model.Publish()->Encode();
  ExperimentModel restored;
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(restored.Publish()->Encode(), bytes);
  EXPECT_EQ(Outcome(restored, "b", 4).revenue, 20);
  EXPECT_FALSE(restored.Decode(bytes.substr(0, bytes.size() - 3)).ok());
  EXPECT_FALSE(restored.Decode(bytes + "x").ok());
  EXPECT_EQ(restored.Publish()->Encode(), bytes);  // unchanged by the failures
}

}  // namespace
}  // namespace mercato::core
