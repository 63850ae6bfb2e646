// The forecasting model on the demo shop's planted demand (demand_items):
// a year of sales fed as the learner feeds them, the last eight weeks held
// out. Smooth items beat seasonal naive with calibrated intervals, an item
// that stopped selling is forecast to sell little, and an intermittent
// item's order-up-to level matches the planted Poisson quantile.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "models/forecast/forecast_model.h"
#include "testing/demo_shop.h"
#include "testing/model_feed.h"

namespace mercato::core {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int kDays = 420, kHeldOut = 56, kTrain = kDays - kHeldOut;

// The q-quantile of Poisson(mean).
int PoissonQuantile(double mean, double q) {
  double p = std::exp(-mean), cdf = p;
  int k = 0;
  while (cdf < q) p *= mean / ++k, cdf += p;
  return k;
}

TEST(PlantedDemandTest, DemoShopDemandIsForecastWithCalibratedIntervalsAndStock) {
  DemoShopOptions o;
  o.users = 60;
  o.items = 16;
  o.days = kDays;
  o.demand_items = 80;
  const DemoShop shop = GenerateDemoShop(o);
  const int64_t held_out_ms = o.start_ms + kTrain * kDayMs;
  // Actual units per demand item and day.
  std::map<std::string, std::vector<double>> sold;
  for (const DemoItem& it : shop.items) {
    if (it.demand != DemoDemand::kNone) sold[it.item.item_id].assign(kDays, 0);
  }
  ForecastOptions fo;
  fo.background = false;
  fo.adopt_after_events = 1;
  fo.fit_every_days = 0;  // one fit, at the end of training
  ForecastModel model(fo);
  testkit::ModelFeed feed(model);
  for (const Event& e : shop.events) {
    if (e.type == EventType::kPurchase && sold.count(e.item_id)) {
      sold[e.item_id][(e.timestamp_ms - o.start_ms) / kDayMs] += e.quantity;
    }
    if (e.timestamp_ms < held_out_ms) feed.Apply(e);
  }
  model.Retrain();
  Event tick;  // the first held-out day opens: the training days are closed
  tick.type = EventType::kView;
  tick.user_id = "u";
  tick.item_id = "item0";
  tick.timestamp_ms = held_out_ms + 1;
  feed.Apply(tick);
  const auto view = std::dynamic_pointer_cast<const ForecastView>(model.Publish());

  double mase = 0, in80 = 0, in95 = 0, smooth = 0, stopped_total = 0, stopped_before = 0;
  double order_up_to = 0, planted_quantile = 0, intermittent = 0;
  for (const DemoItem& it : shop.items) {
    if (it.demand == DemoDemand::kNone) continue;
    const std::vector<double>& y = sold[it.item.item_id];
    ForecastQuery q;
    q.item_id = it.item.item_id;
    q.horizon_days = kHeldOut;
    const absl::StatusOr<ForecastAnswer> a = view->Forecast(q);
    ASSERT_TRUE(a.ok()) << it.item.item_id << ": " << a.status();
    ASSERT_EQ(a->first_day, ShopDay(held_out_ms, 0));
    if (it.demand == DemoDemand::kSmooth) {
      double scale = 0, error = 0;
      for (int t = 7; t < kTrain; ++t) scale += std::abs(y[t] - y[t - 7]) / (kTrain - 7);
      for (int d = 0; d < kHeldOut; ++d) {
        const double actual = y[kTrain + d];
        error += std::abs(actual - a->forecast.mean[d]) / kHeldOut;
        in80 += a->forecast.intervals[0].lower[d] <= actual && actual <= a->forecast.intervals[0].upper[d];
        in95 += a->forecast.intervals[1].lower[d] <= actual && actual <= a->forecast.intervals[1].upper[d];
      }
      mase += error / scale;
      ++smooth;
    } else if (it.demand == DemoDemand::kStops) {
      stopped_total += a->forecast.total;
      stopped_before += it.level * kHeldOut;  // about what it sold at the start
    } else if (it.demand == DemoDemand::kIntermittent) {
      EXPECT_TRUE(a->method == "croston_sba" || a->method == "tsb") << a->method;
      InventoryRequest r;
      r.lead_time_days = 7;
      r.review_period_days = 7;
      r.cycle_service_level = 0.95;
      const absl::StatusOr<InventoryAnswer> plan = view->Plan(it.item.item_id, r);
      ASSERT_TRUE(plan.ok()) << plan.status();
      order_up_to += plan->plan.order_up_to;
      planted_quantile += PoissonQuantile(it.level * 14, 0.95);
      ++intermittent;
    }
  }
  mase /= smooth;
  in80 /= smooth * kHeldOut;
  in95 /= smooth * kHeldOut;
  std::printf("planted demand: %g smooth items, held-out MASE %.3f, 80%% covers %.3f, 95%% covers %.3f\n",
              smooth, mase, in80, in95);
  std::printf("intermittent: mean order-up-to %.2f against the planted 95%% quantile %.2f\n",
              order_up_to / intermittent, planted_quantile / intermittent);
  std::printf("stopped items: forecast %.1f units over the held-out weeks against %.1f at their start\n",
              stopped_total, stopped_before);
  EXPECT_LT(mase, 0.8);
  EXPECT_GE(in80, 0.75);
  EXPECT_LE(in80, 0.85);
  EXPECT_GE(in95, 0.91);
  EXPECT_LE(in95, 0.98);
  EXPECT_NEAR(order_up_to / planted_quantile, 1, 0.1);
  EXPECT_LT(stopped_total, 0.1 * stopped_before);
}

}  // namespace
}  // namespace mercato::core
