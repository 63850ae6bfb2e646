// The forecasting module: its flags and Forecasting.ForecastDemand and
// Forecasting.PlanInventory.
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "mercato/v1/forecasting.grpc.pb.h"
#include "models/forecast/forecast_model.h"
#include "models/pricing/elasticity_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(std::string, shop_time_zone, "",
          "forecasting: the shop's IANA time zone (e.g. Europe/Berlin, with its daylight saving "
          "rules); empty = --shop_utc_offset_minutes. Its days are the forecast's days");
ABSL_FLAG(int, shop_utc_offset_minutes, 0,
          "forecasting: the shop's time zone as minutes east of UTC (-840..840), when "
          "--shop_time_zone is empty");
ABSL_FLAG(int, forecast_late_days, mercato::core::ForecastOptions{}.late_days,
          "forecasting: closed days a late purchase or refund still corrects (0..60); later "
          "ones are counted and ignored");
ABSL_FLAG(int, forecast_history_days, mercato::core::ForecastOptions{}.history_days,
          "forecasting: days of demand kept per series (56..3650)");
ABSL_FLAG(int, forecast_fit_every_days, mercato::core::ForecastOptions{}.fit_every_days,
          "forecasting: choose and fit every series' method every this many closed days "
          "(0 = on request only)");

namespace mercato::server {
namespace {

constexpr int kMaxLevels = 5;

absl::StatusOr<core::ForecastQuery> ToQuery(const v1::ForecastDemandRequest& req) {
  absl::Status s;
  if (req.item_id().empty() == req.category().empty()) {
    s = absl::InvalidArgumentError("item_id: exactly one of item_id and category is required");
  }
  if (s.ok()) s = CheckOptionalId("item_id", req.item_id());
  if (s.ok()) s = CheckOptionalId("category", req.category());
  if (s.ok()) s = CheckCount("horizon_days", req.horizon_days(), 1, 365);
  if (s.ok()) s = CheckCount("interval_levels", req.interval_levels_size(), 0, kMaxLevels);
  if (s.ok()) s = CheckCount("history_days", req.history_days(), 0, 730);
  if (s.ok() && req.has_planned_price()) {
    s = CheckNumber("planned_price", req.planned_price(), 0, kMaxPrice);
    if (s.ok() && (req.planned_price() == 0 || req.item_id().empty())) {
      s = absl::InvalidArgumentError("planned_price: must be > 0, and for an item");
    }
  }
  for (int i = 0; s.ok() && i < req.interval_levels_size(); ++i) {
    const double level = req.interval_levels(i);
    if (!(level > 0 && level < 1)) {
      s = absl::InvalidArgumentError(absl::StrCat("interval_levels[", i, "]: must be in (0, 1)"));
    }
  }
  if (s.ok()) s = CheckTenant("tenant", req.tenant());
  if (!s.ok()) return s;
  core::ForecastQuery q;
  q.item_id = req.item_id();
  q.category = req.category();
  q.horizon_days = req.horizon_days();
  q.history_days = req.history_days();
  if (req.has_planned_price()) q.planned_price = req.planned_price();
  if (req.interval_levels_size() > 0) {
    q.levels.assign(req.interval_levels().begin(), req.interval_levels().end());
  }
  return q;
}

absl::StatusOr<core::InventoryRequest> ToInventory(const v1::PlanInventoryRequest& req) {
  absl::Status s = CheckId("item_id", req.item_id());
  if (s.ok()) s = CheckNumber("on_hand", req.on_hand(), 0, kMaxQuantity * 1000);
  if (s.ok()) s = CheckNumber("on_order", req.on_order(), 0, kMaxQuantity * 1000);
  if (s.ok()) s = CheckNumber("lead_time_days", req.lead_time_days(), 0, 365);
  if (s.ok()) s = CheckNumber("lead_time_sd_days", req.lead_time_sd_days(), 0, 90);
  if (s.ok()) s = CheckCount("review_period_days", req.review_period_days(), 1, 365);
  const bool level = req.cycle_service_level() != 0, fill = req.fill_rate() != 0;
  if (s.ok() && level == fill) {
    s = absl::InvalidArgumentError(
        "cycle_service_level: exactly one of cycle_service_level and fill_rate is required");
  }
  if (s.ok() && level) s = CheckNumber("cycle_service_level", req.cycle_service_level(), 0.5, 0.999);
  if (s.ok() && fill) s = CheckNumber("fill_rate", req.fill_rate(), 0.5, 0.999);
  if (s.ok()) s = CheckNumber("unit_cost", req.unit_cost(), 0, kMaxPrice);
  if (s.ok()) {
    s = CheckNumber("holding_cost_per_unit_year", req.holding_cost_per_unit_year(), 0, kMaxPrice);
  }
  if (s.ok()) s = CheckNumber("order_cost", req.order_cost(), 0, kMaxPrice);
  if (s.ok()) s = CheckTenant("tenant", req.tenant());
  if (!s.ok()) return s;
  core::InventoryRequest r;
  r.on_hand = req.on_hand();
  r.on_order = req.on_order();
  r.lead_time_days = req.lead_time_days();
  r.lead_time_sd_days = req.lead_time_sd_days();
  r.review_period_days = req.review_period_days();
  if (level) r.cycle_service_level = req.cycle_service_level();
  if (fill) r.fill_rate = req.fill_rate();
  r.unit_cost = req.unit_cost();
  r.holding_cost_per_unit_year = req.holding_cost_per_unit_year();
  r.order_cost = req.order_cost();
  return r;
}

// The item's elasticity as the pricing model serves it; none without an
// estimate.
std::optional<core::PriceResponse> PriceResponseOf(const core::Snapshot& snap,
                                                   const std::string& item_id) {
  auto pricing = ServedModel<core::ElasticityView>(snap, core::kElasticityModelName);
  if (!pricing.ok()) return std::nullopt;
  core::ElasticityQuery q;
  q.item_id = item_id;
  const absl::StatusOr<core::ElasticityEstimate> e = pricing->first->Estimate(q);
  if (!e.ok() || e->level == core::ElasticityLevel::kNone) return std::nullopt;
  return core::PriceResponse{e->elasticity, e->ci_low, e->ci_high, e->min_price_seen,
                             e->max_price_seen};
}

UnaryHandler<v1::ForecastDemandRequest, v1::ForecastDemandResponse> ForecastHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::ForecastDemandRequest& req,
              v1::ForecastDemandResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::StatusOr<core::ForecastQuery> q = ToQuery(req);
    if (!q.ok()) return ToGrpcStatus(q.status());
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::ForecastView>(*snap, core::kForecastModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    if (q->planned_price) q->response = PriceResponseOf(*snap, q->item_id);
    absl::StatusOr<core::ForecastAnswer> a = model->first->Forecast(*q);
    if (!a.ok()) return ToGrpcStatus(a.status());
    resp->mutable_mean()->Assign(a->forecast.mean.begin(), a->forecast.mean.end());
    resp->set_first_day(a->first_day);
    resp->set_total(a->forecast.total);
    for (const core::DemandInterval& in : a->forecast.intervals) {
      v1::DemandInterval* out = resp->add_intervals();
      out->set_level(in.level);
      out->mutable_lower()->Assign(in.lower.begin(), in.lower.end());
      out->mutable_upper()->Assign(in.upper.begin(), in.upper.end());
      out->set_total_lower(in.total_lower);
      out->set_total_upper(in.total_upper);
    }
    resp->set_method(a->method);
    resp->set_backtest_mase(a->mase);
    resp->set_seasonal_naive_mase(a->naive_mase);
    resp->set_history_days(a->history_days);
    resp->set_model_version(model->second);
    resp->mutable_history()->Assign(a->history.begin(), a->history.end());
    if (q->planned_price) {
      resp->set_base_price(a->base_price);
      resp->set_price_factor(a->price_factor);
      resp->set_price_outside_seen(a->price_outside_seen);
      resp->set_price_elasticity(q->response ? q->response->elasticity : 0);
      resp->set_note(a->note);
    }
    return grpc::Status::OK;
  };
}

UnaryHandler<v1::PlanInventoryRequest, v1::PlanInventoryResponse> PlanHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::PlanInventoryRequest& req,
              v1::PlanInventoryResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::StatusOr<core::InventoryRequest> r = ToInventory(req);
    if (!r.ok()) return ToGrpcStatus(r.status());
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::ForecastView>(*snap, core::kForecastModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    absl::StatusOr<core::InventoryAnswer> a = model->first->Plan(req.item_id(), *r);
    if (!a.ok()) return ToGrpcStatus(a.status());
    const core::InventoryPlan& p = a->plan;
    resp->set_protection_demand_mean(p.protection_mean);
    resp->set_protection_demand_quantile(p.protection_quantile);
    resp->set_safety_stock(p.safety_stock);
    resp->set_reorder_point(p.reorder_point);
    resp->set_order_up_to(p.order_up_to);
    resp->set_order_now(p.order_now);
    resp->set_has_eoq(p.eoq.has_value());
    resp->set_eoq(p.eoq.value_or(0));
    resp->set_stockout_probability(p.stockout_probability);
    resp->set_days_of_cover(p.days_of_cover);
    resp->set_method(a->method);
    resp->set_backtest_mase(a->mase);
    resp->set_seasonal_naive_mase(a->naive_mase);
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

absl::Status ForecastFromFlags(ModuleOptions& options) {
  core::ForecastOptions& f = options.Mutable<core::ForecastOptions>();
  f.time_zone = absl::GetFlag(FLAGS_shop_time_zone);
  f.utc_offset_minutes = absl::GetFlag(FLAGS_shop_utc_offset_minutes);
  f.late_days = absl::GetFlag(FLAGS_forecast_late_days);
  f.history_days = absl::GetFlag(FLAGS_forecast_history_days);
  f.fit_every_days = absl::GetFlag(FLAGS_forecast_fit_every_days);
  absl::Status s = CheckFlag(-840 <= f.utc_offset_minutes && f.utc_offset_minutes <= 840,
                             "shop_utc_offset_minutes", "must be in -840..840");
  if (s.ok()) {
    const absl::StatusOr<core::ShopCalendar> calendar = core::ShopCalendar::Of(f);
    s = CheckFlag(calendar.ok(), "shop_time_zone", "must name a zone of the system's zoneinfo (tzdata)");
  }
  if (s.ok()) s = CheckFlag(0 <= f.late_days && f.late_days <= 60, "forecast_late_days", "must be in 0..60");
  if (s.ok()) {
    s = CheckFlag(56 <= f.history_days && f.history_days <= 3650, "forecast_history_days",
                  "must be in 56..3650");
  }
  if (s.ok()) {
    s = CheckFlag(0 <= f.fit_every_days && f.fit_every_days <= 365, "forecast_fit_every_days",
                  "must be in 0..365");
  }
  return s;
}

void ServeForecast(ServiceRegistrar& r) {
  using Raw = v1::Forecasting::WithRawMethod_ForecastDemand<
      v1::Forecasting::WithRawMethod_PlanInventory<v1::Forecasting::Service>>;
  Raw* forecasting =
      r.Serve(std::make_unique<Raw>(), v1::Forecasting::service_full_name(), Scope::kForecast);
  r.Unary(forecasting, &Raw::RequestForecastDemand, "ForecastDemand", ForecastHandler(r.runtime()));
  r.Unary(forecasting, &Raw::RequestPlanInventory, "PlanInventory", PlanHandler(r.runtime()));
}

}  // namespace

// Reads the pricing model's elasticities, when asked for a planned price.
ModelModule ForecastModule() {
  return {.name = core::kForecastModelName,
          .from_flags = ForecastFromFlags,
          .make = [](const ModuleOptions& o, const ModelDependencies&) -> std::unique_ptr<core::Model> {
            return std::make_unique<core::ForecastModel>(o.Get<core::ForecastOptions>());
          },
          .serve = ServeForecast};
}

}  // namespace mercato::server
