// Inventory planning from a demand forecast and its backtest errors: a
// periodic-review order-up-to policy whose safety stock comes from the
// forecast's own error distribution over the protection interval (lead
// time plus review period), mixed over the lead time's spread, rather than
// from a normal approximation of raw history.
#ifndef MERCATO_MODELS_FORECAST_INVENTORY_PLAN_H_
#define MERCATO_MODELS_FORECAST_INVENTORY_PLAN_H_

#include <optional>
#include <vector>

#include "models/forecast/demand_methods.h"

namespace mercato::core {

struct InventoryRequest {
  double on_hand = 0, on_order = 0;
  // Days; the lead time is normal with this mean and deviation (>= 0).
  double lead_time_days = 0, lead_time_sd_days = 0;
  int review_period_days = 1;
  // One of: the chance a cycle ends without a stockout (0.5..0.999), or the
  // share of demand met from stock (fill rate, 0.5..0.999).
  std::optional<double> cycle_service_level, fill_rate;
  // Optional, for the economic order quantity: per unit, per unit-year, per order.
  double unit_cost = 0, holding_cost_per_unit_year = 0, order_cost = 0;
};

struct InventoryPlan {
  // Demand over the lead time plus the review period.
  double protection_mean = 0, protection_quantile = 0;
  double safety_stock = 0;
  // The lead-time demand quantile (continuous review) and the order-up-to
  // level over the protection interval.
  double reorder_point = 0, order_up_to = 0;
  double order_now = 0;
  // Economic order quantity; none without costs.
  std::optional<double> eoq;
  // Chance that demand over the protection interval exceeds on hand plus on
  // order; days the stock on hand covers at the forecast rate.
  double stockout_probability = 0, days_of_cover = 0;
};

// `daily` is the point forecast from tomorrow on (at least lead time + 4 sd
// + review period days); `cumulative_errors` the errors of its running
// total, to be multiplied by `spread`.
InventoryPlan PlanInventory(const std::vector<double>& daily, const ErrorProfile& cumulative_errors,
                            double spread, const InventoryRequest& request);

// Days of forecast PlanInventory needs for `request`.
int InventoryHorizon(const InventoryRequest& request);

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FORECAST_INVENTORY_PLAN_H_
