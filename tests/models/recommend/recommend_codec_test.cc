// The recommendation model's checkpoint format (recommend_codec.cc).
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/recommend/recommend_model.h"
#include "testing/demo_shop.h"
#include "testing/model_feed.h"

namespace mercato::core {
namespace {

RecommendOptions Small() {
  RecommendOptions o;
  o.ials.dim = 8;
  o.background = false;
  // An index from 20 items on; fits adopted within 50 events; a
  // hyperparameter search in the retrain.
  o.hnsw_min_items = 20;
  o.adopt_after_events = 50;
  o.index_adopt_after_events = 50;
  o.tuning.trials = 3;
  return o;
}

// The demo shop's events, catalogue included, and a retrain; then events the
// model does not use until no fit runs (a checkpoint is of a settled model).
void Feed(RecommendModel& model) {
  DemoShopOptions d;
  d.users = 200;
  d.items = 80;
  d.days = 20;
  const DemoShop shop = GenerateDemoShop(d);
  testkit::ModelFeed feed(model);
  int n = 0;
  for (const Event& e : DemoShopLog(shop)) {
    feed.Apply(e);
    if (++n == 2000) model.RetrainNow();
  }
  Event label;
  label.type = EventType::kFraudLabel;
  label.order_id = "o-1";
  while (model.Publish()->Running()) feed.Apply(label);
}

std::string Encoded(RecommendModel& model) { return model.Publish()->Encode(); }

TEST(RecommendCodecTest, DecodeThenEncodeGivesTheSameBytes) {
  RecommendModel model(Small());
  Feed(model);
  const std::string bytes = Encoded(model);
  ASSERT_EQ(bytes[0], 6);  // the format number comes first
  // The index came along, with the items fold-in moved since it was built.
  const auto view = std::dynamic_pointer_cast<const RecommendView>(model.Publish());
  ASSERT_TRUE(view->has_index());
  EXPECT_GT(view->index().stale->size(), 0u);
  ASSERT_EQ(view->Trials().size(), 3u);
  RecommendModel restored(Small());
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(Encoded(restored), bytes);
  // And the restored model learns on exactly as the original.
  Event e;
  e.type = EventType::kPurchase;
  e.user_id = "new-user";
  e.item_id = "new-item";
  e.order_id = "o-new";
  e.timestamp_ms = e.shop_time_ms = 1900000000000;
  e.sequence = 1000000;  // as the learner would give it, numbered and stamped
  model.Apply(e);
  restored.Apply(e);
  EXPECT_EQ(Encoded(restored), Encoded(model));
}

// A state written without an adopted search takes the flags' event weights
// and half-life when restored; one with a search keeps the search's.
TEST(RecommendCodecTest, RestoredHyperparametersAreTheFlagsOrTheSearchs) {
  RecommendOptions o = Small();
  o.tuning.trials = 0;
  RecommendModel model(o);
  Feed(model);
  const std::string bytes = Encoded(model);
  RecommendOptions changed = o;
  changed.ials.weights[static_cast<int>(EventType::kView)] = 2;
  changed.ials.decay_half_life_days = 30;
  RecommendModel restored(changed);
  ASSERT_TRUE(restored.Decode(bytes).ok());
  std::map<std::string, double> gauges;
  for (const auto& [name, x] : restored.Publish()->Gauges()) gauges[name] = x;
  EXPECT_EQ(gauges["weight_view"], 2);
  EXPECT_EQ(gauges["decay_half_life_days"], 30);
  EXPECT_NE(Encoded(restored), bytes);  // the confidences re-weighed

  RecommendModel searched(Small());
  Feed(searched);
  RecommendOptions flags = Small();
  flags.ials.decay_half_life_days = 30;
  RecommendModel again(flags);
  ASSERT_TRUE(again.Decode(Encoded(searched)).ok());
  gauges.clear();
  for (const auto& [name, x] : again.Publish()->Gauges()) gauges[name] = x;
  const std::vector<FitTrial> trials = again.Publish()->Trials();
  ASSERT_FALSE(trials.empty());
  for (const FitTrial& t : trials) {
    if (!t.adopted) continue;
    for (const auto& [name, x] : t.parameters) EXPECT_EQ(gauges[name], x) << name;
  }
  EXPECT_NE(gauges["decay_half_life_days"], 30);  // not the flag
}

TEST(RecommendCodecTest, DamagedBytesAreRefusedAndLeaveTheStateAlone) {
  RecommendModel model(Small());
  Feed(model);
  const std::string bytes = Encoded(model);
  RecommendModel target(Small());
  const std::string empty = Encoded(target);
  std::string unknown = bytes;
  unknown[0] = 9;
  EXPECT_EQ(target.Decode(unknown).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(target.Decode(bytes + "x").code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(target.Decode(bytes.substr(0, bytes.size() / 2)).ok());
  EXPECT_EQ(Encoded(target), empty);
}

}  // namespace
}  // namespace mercato::core
