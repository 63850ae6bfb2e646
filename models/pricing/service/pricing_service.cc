// The pricing module: its flags and Pricing.PriceElasticity.
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "models/pricing/elasticity_model.h"
#include "models/segments/segment_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(int, elasticity_period_hours, 24, "PriceElasticity: length of one observation period");
ABSL_FLAG(double, elasticity_forgetting, mercato::core::ElasticityOptions{}.forgetting,
          "PriceElasticity: weight old periods keep at each new one (1 = never forget)");

namespace mercato::server {
namespace {

constexpr int kMaxCandidatePrices = 100;

absl::StatusOr<core::ElasticityQuery> ToQuery(const v1::PriceElasticityRequest& req) {
  absl::Status s;
  if (req.item_id().empty() == req.category().empty()) {
    s = absl::InvalidArgumentError("item_id: exactly one of item_id and category is required");
  }
  if (s.ok()) s = CheckOptionalId("item_id", req.item_id());
  if (s.ok()) s = CheckOptionalId("category", req.category());
  if (s.ok()) s = CheckNumber("unit_cost", req.unit_cost(), 0, kMaxPrice);
  if (s.ok()) s = CheckCount("candidate_prices", req.candidate_prices_size(), 0,
                             kMaxCandidatePrices);
  for (int i = 0; s.ok() && i < req.candidate_prices_size(); ++i) {
    const std::string field = absl::StrCat("candidate_prices[", i, "]");
    s = CheckNumber(field, req.candidate_prices(i), 0, kMaxPrice);
    if (s.ok() && req.candidate_prices(i) == 0) {
      s = absl::InvalidArgumentError(absl::StrCat(field, ": must be > 0"));
    }
  }
  if (s.ok()) s = CheckTenant("tenant", req.tenant());
  if (!s.ok()) return s;
  core::ElasticityQuery q;
  q.item_id = req.item_id();
  q.category = req.category();
  if (req.has_segment_id()) q.segment = req.segment_id();
  q.unit_cost = req.unit_cost();
  q.candidate_prices.assign(req.candidate_prices().begin(), req.candidate_prices().end());
  return q;
}

UnaryHandler<v1::PriceElasticityRequest, v1::PriceElasticityResponse> PriceElasticityHandler(
    Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::PriceElasticityRequest& req,
              v1::PriceElasticityResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::StatusOr<core::ElasticityQuery> q = ToQuery(req);
    if (!q.ok()) return ToGrpcStatus(q.status());
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::ElasticityView>(*snap, core::kElasticityModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    absl::StatusOr<core::ElasticityEstimate> e = model->first->Estimate(*q);
    if (!e.ok()) return ToGrpcStatus(e.status());
    resp->set_model_version(model->second);
    resp->set_has_estimate(e->level != core::ElasticityLevel::kNone);
    resp->set_level(static_cast<v1::EstimateLevel>(e->level));
    resp->set_elasticity(e->elasticity);
    resp->set_standard_error(e->standard_error);
    resp->set_ci_low(e->ci_low);
    resp->set_ci_high(e->ci_high);
    resp->set_item_elasticity(e->item_elasticity);
    resp->set_item_standard_error(e->item_standard_error);
    resp->set_observations(e->observations);
    resp->set_min_price_seen(e->min_price_seen);
    resp->set_max_price_seen(e->max_price_seen);
    resp->set_has_optimal_price(e->optimal_price.has_value());
    resp->set_optimal_price(e->optimal_price.value_or(0));
    for (const core::PricePointEstimate& p : e->candidates) {
      v1::PricePoint* out = resp->add_candidates();
      out->set_price(p.price);
      out->set_expected_demand(p.expected_demand);
      out->set_expected_profit(p.expected_profit);
      out->set_extrapolated(p.extrapolated);
    }
    resp->set_note(e->note);
    return grpc::Status::OK;
  };
}

absl::Status PricingFromFlags(ModuleOptions& options) {
  core::ElasticityOptions& e = options.Mutable<core::ElasticityOptions>();
  const int hours = absl::GetFlag(FLAGS_elasticity_period_hours);
  e.period_ms = int64_t{3600000} * hours;
  e.forgetting = absl::GetFlag(FLAGS_elasticity_forgetting);
  absl::Status s = CheckFlag(hours >= 1, "elasticity_period_hours", "must be >= 1");
  if (s.ok()) {
    s = CheckFlag(e.forgetting > 0 && e.forgetting <= 1, "elasticity_forgetting",
                  "must be in (0, 1]");
  }
  return s;
}

void ServePricing(ServiceRegistrar& r) {
  using Raw = v1::Pricing::WithRawMethod_PriceElasticity<v1::Pricing::Service>;
  Raw* pricing =
      r.Serve(std::make_unique<Raw>(), v1::Pricing::service_full_name(), Scope::kPricing);
  r.Unary(pricing, &Raw::RequestPriceElasticity, "PriceElasticity",
          PriceElasticityHandler(r.runtime()));
}

}  // namespace

// Reads the segments model: elasticity per customer segment.
ModelModule PricingModule() {
  return {.name = core::kElasticityModelName,
          .from_flags = PricingFromFlags,
          .make = [](const ModuleOptions& o, const ModelDependencies& d) -> std::unique_ptr<core::Model> {
            return std::make_unique<core::ElasticityModel>(
                o.Get<core::ElasticityOptions>(), dynamic_cast<core::SegmentModel*>(d.at(0)));
          },
          .serve = ServePricing};
}

}  // namespace mercato::server
