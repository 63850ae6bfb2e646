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

// Demand as a mixture over lead times: a run of (value, probability) points
// per lead time, each sorted by value, the probabilities summing to 1.
struct Mixture {
  std::vector<std::pair<double, double>> points;  // the runs one after another
  std::vector<size_t> ends;                       // where each run ends

  // The lowest value whose cumulative probability reaches q. Walks down
  // from the top, so a high q visits only the points above the answer.
  double Quantile(double q) const {
    std::vector<size_t> left = ends;  // one past each run's next point from the top
    double above = 0, answer = 0;
    for (;;) {
      size_t top = ends.size();
      for (size_t r = 0; r < ends.size(); ++r) {
        const size_t begin = r == 0 ? 0 : ends[r - 1];
        if (left[r] > begin && (top == ends.size() || points[left[r] - 1].first > points[left[top] - 1].first)) {
          top = r;
        }
      }
      if (top == ends.size()) return answer;
      const auto& [v, p] = points[--left[top]];
      if (1 - above < q) return answer;  // v's cumulative probability is below q
      answer = v;
      above += p;
    }
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
  // The lowest value whose expected shortage is at most `allowed`: the
  // shortage falls as the level rises, so a binary search finds it.
  double Covering(double allowed) const {
    std::vector<double> values;
    for (const auto& [v, w] : points) values.push_back(v);
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    size_t lo = 0, hi = values.size() - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (Shortage(values[mid]) <= allowed) hi = mid;
      else lo = mid + 1;
    }
    return values[lo];
  }
};

// Demand over lead time plus `review` days, mixed over the lead times: for
// each, the forecast total (prefix[days]) plus the error distribution of
// that horizon, never below 0.
Mixture Mix(const std::vector<double>& prefix, const ErrorProfile& cumulative, double spread,
            const std::vector<std::pair<int, double>>& leads, int review, double* mean) {
  Mixture m;
  m.points.reserve(leads.size() * kErrorLevels.size());
  *mean = 0;
  const int longest = static_cast<int>(prefix.size()) - 1;
  for (const auto& [l, w] : leads) {
    const int days = std::min(l + review, longest);
    const double total = prefix[days];
    *mean += w * total;
    const size_t begin = m.points.size();
    if (days == 0 || cumulative.empty()) {
      m.points.emplace_back(total, w);
    } else {
      cumulative.Points(days, &m.points);
      for (size_t i = begin; i < m.points.size(); ++i) {
        auto& [v, p] = m.points[i];
        v = std::max(0.0, total + spread * v), p *= w;
      }
    }
    m.ends.push_back(m.points.size());
  }
  return m;
}

}  // namespace

int InventoryHorizon(const InventoryRequest& r) {
  return static_cast<int>(std::ceil(std::max(0.0, r.lead_time_days) +
                                    4 * std::max(0.0, r.lead_time_sd_days))) +
         std::max(1, r.review_period_days) + 1;
}

InventoryPlan PlanInventory(const std::vector<double>& daily, const ErrorProfile& cumulative,
                            double spread, const InventoryRequest& r) {
  InventoryPlan plan;
  const std::vector<std::pair<int, double>> leads = LeadTimes(r);
  const int review = std::max(1, r.review_period_days);
  std::vector<double> prefix(daily.size() + 1, 0.0);
  std::partial_sum(daily.begin(), daily.end(), prefix.begin() + 1);
  double lead_mean = 0;
  const Mixture protection = Mix(prefix, cumulative, spread, leads, review, &plan.protection_mean);
  const Mixture lead = Mix(prefix, cumulative, spread, leads, 0, &lead_mean);
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
