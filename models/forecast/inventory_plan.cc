#include "models/forecast/inventory_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

namespace mercato::core {
namespace {

// Whole-day lead times and their weights under the request's normal.
std::vector<std::pair<int, double>> LeadTimes(const InventoryRequest& r) {
  const double mean = std::max(0.0, r.lead_time_days), sd = std::max(0.0, r.lead_time_sd_days);
  if (sd == 0) return {{static_cast<int>(std::lround(mean)), 1.0}};
  std::vector<std::pair<int, double>> out;
  double total = 0;
  for (int l = std::max(0, static_cast<int>(std::floor(mean - 4 * sd)));
       l <= static_cast<int>(std::ceil(mean + 4 * sd)); ++l) {
    const double z = (l - mean) / sd;
    out.emplace_back(l, std::exp(-0.5 * z * z));
    total += out.back().second;
  }
  for (auto& [l, w] : out) w /= total;
  return out;
}

// Demand over the first `days` days: samples (forecast total plus each
// backtest error of that horizon, never below 0).
std::vector<double> DemandSamples(const std::vector<double>& daily,
                                  const std::vector<std::vector<double>>& cumulative, int days) {
  const double total = std::accumulate(daily.begin(), daily.begin() + days, 0.0);
  if (days == 0) return {0.0};
  std::vector<double> out;
  for (double e : ErrorsNear(cumulative, days)) out.push_back(std::max(0.0, total + e));
  if (out.empty()) out.push_back(total);
  return out;
}

// A mixture of sample sets, each with a weight.
struct Mixture {
  std::vector<std::pair<double, double>> points;  // value, weight; sorted by value
  double Quantile(double q) const {
    double seen = 0;
    for (const auto& [v, w] : points) {
      if ((seen += w) >= q) return v;
    }
    return points.empty() ? 0 : points.back().first;
  }
  double Exceeds(double level) const {
    double p = 0;
    for (const auto& [v, w] : points) p += v > level ? w : 0;
    return p;
  }
  double Shortage(double level) const {
    double s = 0;
    for (const auto& [v, w] : points) s += w * std::max(0.0, v - level);
    return s;
  }
  // The lowest level whose expected shortage is at most `allowed`: the
  // shortage falls as the level rises, so a binary search finds it.
  double Covering(double allowed) const {
    if (points.empty()) return 0;
    size_t lo = 0, hi = points.size() - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (Shortage(points[mid].first) <= allowed) hi = mid;
      else lo = mid + 1;
    }
    return points[lo].first;
  }
};

Mixture Mix(const std::vector<double>& daily, const std::vector<std::vector<double>>& cumulative,
            const std::vector<std::pair<int, double>>& leads, int review, double* mean) {
  Mixture m;
  *mean = 0;
  for (const auto& [l, w] : leads) {
    const int days = std::min<int>(l + review, static_cast<int>(daily.size()));
    *mean += w * std::accumulate(daily.begin(), daily.begin() + days, 0.0);
    const std::vector<double> samples = DemandSamples(daily, cumulative, days);
    for (double v : samples) m.points.emplace_back(v, w / static_cast<double>(samples.size()));
  }
  std::sort(m.points.begin(), m.points.end());
  return m;
}

}  // namespace

int InventoryHorizon(const InventoryRequest& r) {
  return static_cast<int>(std::ceil(std::max(0.0, r.lead_time_days) +
                                    4 * std::max(0.0, r.lead_time_sd_days))) +
         std::max(1, r.review_period_days) + 1;
}

InventoryPlan PlanInventory(const std::vector<double>& daily,
                            const std::vector<std::vector<double>>& cumulative,
                            const InventoryRequest& r) {
  InventoryPlan plan;
  const std::vector<std::pair<int, double>> leads = LeadTimes(r);
  const int review = std::max(1, r.review_period_days);
  double lead_mean = 0;
  const Mixture protection = Mix(daily, cumulative, leads, review, &plan.protection_mean);
  const Mixture lead = Mix(daily, cumulative, leads, 0, &lead_mean);
  if (r.fill_rate) {
    // The lowest level whose expected shortage per review period is within
    // (1 - fill rate) of the period's demand.
    const double period_demand = std::accumulate(daily.begin(), daily.begin() + review, 0.0);
    const double allowed = (1 - *r.fill_rate) * period_demand;
    plan.order_up_to = protection.Covering(allowed);
    plan.reorder_point = lead.Covering(allowed);
  } else {
    const double level = r.cycle_service_level.value_or(0.95);
    plan.order_up_to = protection.Quantile(level);
    plan.reorder_point = lead.Quantile(level);
  }
  plan.protection_quantile = plan.order_up_to;
  plan.safety_stock = std::max(0.0, plan.order_up_to - plan.protection_mean);
  plan.order_now = std::max(0.0, plan.order_up_to - r.on_hand - r.on_order);
  const double per_day = daily.empty() ? 0 : std::accumulate(daily.begin(), daily.end(), 0.0) /
                                                 static_cast<double>(daily.size());
  if (r.order_cost > 0 && r.holding_cost_per_unit_year > 0) {
    plan.eoq = std::sqrt(2 * per_day * 365 * r.order_cost / r.holding_cost_per_unit_year);
  }
  plan.stockout_probability = protection.Exceeds(r.on_hand + r.on_order);
  plan.days_of_cover = per_day > 0 ? r.on_hand / per_day : 0;
  return plan;
}

}  // namespace mercato::core
