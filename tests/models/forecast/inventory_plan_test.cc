// PlanInventory's order-up-to level, followed day by day through simulated
// years of demand and random lead times, meets its cycle service level.
#include "models/forecast/inventory_plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace mercato::core {
namespace {

constexpr int kHistory = 364;

struct Simulated {
  double service;  // share of cycles ending without a shortage
  InventoryPlan plan;
};

// Poisson(10) a day, a review every 7 days, lead time N(5, 1.5) days; the
// plan is made once from a year of history, then followed for `years`
// years. A cycle runs from one order's arrival to the next's; it is met when
// the net stock just before the next arrival is not negative.
Simulated Simulate(double level, int years, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::poisson_distribution<int> demand(10);
  std::normal_distribution<double> lead(5, 1.5);
  std::vector<double> history;
  for (int t = 0; t < kHistory; ++t) history.push_back(demand(rng));
  const DemandSeries s{history, 0, {}};
  const DemandChoice choice = ChooseDemandMethod(s, 112, 30);
  InventoryRequest r;
  r.lead_time_days = 5;
  r.lead_time_sd_days = 1.5;
  r.review_period_days = 7;
  r.cycle_service_level = level;
  const InventoryPlan plan =
      PlanInventory(ForecastDemand(choice.fit, s, InventoryHorizon(r)), ErrorProfile::From(choice.backtest.cumulative), 1, r);

  const int days = years * 364;
  std::vector<double> arriving(days + 20, 0), net_end(days);
  std::vector<int> arrivals;
  double net = plan.order_up_to, on_order = 0;
  for (int d = 0; d < days; ++d) {
    net += arriving[d];
    on_order -= arriving[d];
    if (d % r.review_period_days == 0) {
      const double order = std::max(0.0, plan.order_up_to - net - on_order);
      const int a = d + std::max(0, static_cast<int>(std::lround(lead(rng))));
      arrivals.push_back(a);
      if (a == d) {
        net += order;
      } else {
        arriving[a] += order;
        on_order += order;
      }
    }
    net -= demand(rng);
    net_end[d] = net;
  }
  double met = 0, cycles = 0;
  for (size_t i = 2; i < arrivals.size(); ++i) {
    if (arrivals[i] < days && arrivals[i] >= 1) ++cycles, met += net_end[arrivals[i] - 1] >= 0;
  }
  return {met / cycles, plan};
}

// Twenty years give about a thousand cycles: the achieved level is then
// known to about a point.
TEST(InventoryPlanTest, OrderUpToMeetsItsCycleServiceLevel) {
  for (double level : {0.90, 0.95, 0.99}) {
    const Simulated s = Simulate(level, 20, 11);
    std::printf("target %.2f: achieved %.3f (order up to %.1f, safety stock %.1f)\n", level,
                s.service, s.plan.order_up_to, s.plan.safety_stock);
    EXPECT_NEAR(s.service, level, 0.02);
    EXPECT_GT(s.plan.safety_stock, 0);
  }
}

// Intermittent sellers (Poisson 0.3 a day, two years each): the order-up-to
// level for 95% over lead time plus review period is, on average over 20
// items, within 10% of the planted demand's own 95% quantile.
TEST(InventoryPlanTest, IntermittentSafetyStockMatchesThePlantedQuantile) {
  // The planted truth: Poisson(0.3 x 21 = 6.3), whose 95% quantile is 11.
  double cdf = 0, term = std::exp(-6.3);
  int truth = 0;
  for (; (cdf += term) < 0.95; ++truth) term *= 6.3 / (truth + 1);
  ASSERT_EQ(truth, 11);
  InventoryRequest r;
  r.lead_time_days = 14;
  r.review_period_days = 7;
  r.cycle_service_level = 0.95;
  double mean = 0;
  const int items = 20;
  for (int i = 0; i < items; ++i) {
    std::mt19937_64 rng(21 + i);
    std::poisson_distribution<int> demand(0.3);
    std::vector<double> history;
    for (int t = 0; t < 728; ++t) history.push_back(demand(rng));
    const DemandSeries s{history, 0, {}};
    const DemandChoice choice = ChooseDemandMethod(s, 364, 30);
    ASSERT_TRUE(choice.intermittent);
    mean += PlanInventory(ForecastDemand(choice.fit, s, InventoryHorizon(r)),
                          ErrorProfile::From(choice.backtest.cumulative), 1, r)
                .order_up_to /
            items;
  }
  std::printf("intermittent: mean order-up-to %.2f against the planted quantile %d\n", mean, truth);
  EXPECT_NEAR(mean, truth, 0.1 * truth);
}

TEST(InventoryPlanTest, OrdersWhatIsMissingAndReportsCoverAndCosts) {
  const std::vector<double> daily(30, 4.0);
  std::vector<std::vector<double>> cumulative(30);
  for (int h = 1; h <= 30; ++h) {
    for (int i = -50; i <= 50; ++i) cumulative[h - 1].push_back(i * 0.04 * std::sqrt(h));
  }
  InventoryRequest r;
  r.on_hand = 20;
  r.on_order = 10;
  r.lead_time_days = 3;
  r.review_period_days = 7;
  r.cycle_service_level = 0.9;
  r.holding_cost_per_unit_year = 2;
  r.order_cost = 50;
  const InventoryPlan p = PlanInventory(daily, ErrorProfile::From(cumulative), 1, r);
  EXPECT_DOUBLE_EQ(p.protection_mean, 40);  // 10 days at 4
  EXPECT_NEAR(p.order_up_to, 40 + 0.8 * 2 * std::sqrt(10.0), 0.2);  // the 90% error quantile
  EXPECT_NEAR(p.order_now, p.order_up_to - 30, 1e-9);
  EXPECT_DOUBLE_EQ(p.days_of_cover, 5);
  ASSERT_TRUE(p.eoq);
  EXPECT_NEAR(*p.eoq, std::sqrt(2 * 4 * 365 * 50 / 2.0), 1e-9);
  EXPECT_NEAR(p.stockout_probability, 1, 1e-9);  // 30 on hand and on order for 40 expected
  r.fill_rate = 0.99;
  r.cycle_service_level.reset();
  const InventoryPlan f = PlanInventory(daily, ErrorProfile::From(cumulative), 1, r);
  EXPECT_GT(f.order_up_to, 40);
  EXPECT_LT(f.order_up_to, p.order_up_to);  // 1% of a week's demand short allows less stock
}

}  // namespace
}  // namespace mercato::core
