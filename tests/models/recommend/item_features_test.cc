// Catalogue features: new items with attributes that match a taste reach
// that taste's customers before anyone interacts with them.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "models/recommend/recommend_model.h"
#include "testing/demo_shop.h"

namespace mercato::core {
namespace {

DemoShopOptions Shop() {
  DemoShopOptions o;
  o.users = 800;
  o.items = 300;
  o.days = 60;
  return o;
}

RecommendOptions Options(bool item_features) {
  RecommendOptions options;
  options.background = false;
  options.item_features = item_features;
  return options;
}

std::shared_ptr<const RecommendView> ViewOf(RecommendModel& model) {
  return std::dynamic_pointer_cast<const RecommendView>(model.Publish());
}

// The new item of category c: planted in the demo shop's category c, with a
// brand that its items share.
std::string NewItem(int c) { return absl::StrCat("new-", c); }

class ItemFeaturesTest : public testing::Test {
 protected:
  void Train(RecommendModel& model) {
    const int64_t t0 = shop_.events.front().timestamp_ms;
    int n = 0;
    for (DemoItem it : shop_.items) {
      it.item.attributes["brand"] = absl::StrCat("brand-", it.category);
      model.Apply(ItemUpdateEvent(it.item, t0, absl::StrCat("c", n++)));
    }
    for (const Event& e : shop_.events) model.Apply(e);
    model.RetrainNow();
    // After training: one new item per category, nothing known of it but
    // the catalogue.
    for (int c = 0; c < static_cast<int>(shop_.categories.size()); ++c) {
      Item item;
      item.item_id = NewItem(c);
      item.category_path = {"shop", shop_.categories[c]};
      item.attributes["brand"] = absl::StrCat("brand-", c);
      item.price = 20;
      model.Apply(ItemUpdateEvent(item, shop_.events.back().timestamp_ms, item.item_id));
    }
  }

  // Over the first 300 customers: how often the new item of their
  // favourite category is in their top 20, and how often a new item of
  // another category is (per item).
  std::pair<double, double> Rates(const RecommendView& view) {
    const int categories = static_cast<int>(shop_.categories.size());
    double own = 0, other = 0;
    int users = 0;
    for (int u = 0; u < 300; ++u) {
      const DemoUser& user = shop_.users[u];
      RecommendQuery q;
      q.user_id = user.user_id;
      q.count = 20;
      absl::StatusOr<std::vector<Recommendation>> recs = view.Recommend(q);
      EXPECT_TRUE(recs.ok());
      if (!recs.ok()) continue;
      ++users;
      const int favourite = user.favourite_categories[0];
      for (const Recommendation& r : *recs) {
        for (int c = 0; c < categories; ++c) {
          if (r.item_id != NewItem(c)) continue;
          (c == favourite ? own : other) += 1;
        }
      }
    }
    return {own / users, other / users / (categories - 1)};
  }

  const DemoShop shop_ = GenerateDemoShop(Shop());
};

TEST_F(ItemFeaturesTest, NewItemsReachTheirTasteBeforeAnyInteraction) {
  RecommendModel model(Options(true));
  Train(model);
  auto view = ViewOf(model);
  const auto [own, other] = Rates(*view);
  std::printf("a new item in its taste's top 20: %.3f of customers; of another taste: %.3f\n", own,
              other);
  EXPECT_GT(own, 0.2);
  // A category path and a brand per category.
  const auto counts = view->Counts();
  const auto features = std::find_if(counts.begin(), counts.end(),
                                     [](const auto& c) { return c.first == "item_features"; });
  ASSERT_NE(features, counts.end());
  EXPECT_EQ(features->second, 2 * shop_.categories.size());
  EXPECT_GE(own, 5 * other) << own << " against " << other;

  // Similar items of a new item are its category's.
  int c = 0;
  absl::StatusOr<std::vector<Recommendation>> similar = view->SimilarItems(NewItem(c), 10, {});
  ASSERT_TRUE(similar.ok());
  ASSERT_EQ(similar->size(), 10u);
  int same = 0;
  for (const Recommendation& r : *similar) {
    for (const DemoItem& it : shop_.items) same += it.item.item_id == r.item_id && it.category == c;
  }
  EXPECT_GE(same, 7);

  // The explanation names the feature that put a new item there.
  RecommendQuery q;
  q.user_id = shop_.users[0].user_id;
  q.count = 20;
  q.explain = true;
  q.candidate_item_ids = {NewItem(shop_.users[0].favourite_categories[0])};
  absl::StatusOr<std::vector<Recommendation>> explained = view->Recommend(q);
  ASSERT_TRUE(explained.ok());
  ASSERT_FALSE(explained->empty());
  EXPECT_EQ(explained->front().source, RecommendSource::kPersonal);
  const std::string& attribute = explained->front().attribute;
  EXPECT_TRUE(attribute.rfind("brand=", 0) == 0 || attribute.rfind("category=shop > ", 0) == 0)
      << attribute;
  EXPECT_GE(explained->front().attribute_share, 0.5);

  // A checkpoint keeps the features: the same answers after a restore.
  RecommendModel restored(Options(true));
  ASSERT_TRUE(restored.Decode(view->Encode()).ok());
  auto again = ViewOf(restored);
  EXPECT_EQ(again->Encode(), view->Encode());
  q.candidate_item_ids.clear();
  q.explain = false;
  const auto before = view->Recommend(q), after = again->Recommend(q);
  ASSERT_TRUE(before.ok() && after.ok());
  ASSERT_EQ(before->size(), after->size());
  for (size_t i = 0; i < before->size(); ++i) EXPECT_EQ((*before)[i].item_id, (*after)[i].item_id);

  // Its first interactions move it from its prior toward its own row.
  const std::vector<float> prior(view->ItemFactors(NewItem(c)),
                                 view->ItemFactors(NewItem(c)) + view->dim());
  Event e;
  e.type = EventType::kPurchase;
  e.user_id = shop_.users[1].user_id;
  e.item_id = NewItem(c);
  e.order_id = "first";
  e.timestamp_ms = shop_.events.back().timestamp_ms + 1000;
  model.Apply(e);
  const float* moved = ViewOf(model)->ItemFactors(NewItem(c));
  EXPECT_FALSE(std::equal(prior.begin(), prior.end(), moved));
}

TEST_F(ItemFeaturesTest, WithoutFeaturesNewItemsWaitForInteractions) {
  RecommendModel model(Options(false));
  Train(model);
  const auto [own, other] = Rates(*ViewOf(model));
  EXPECT_EQ(own, 0);
  EXPECT_EQ(other, 0);
}

}  // namespace
}  // namespace mercato::core
