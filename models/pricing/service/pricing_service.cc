#include "absl/strings/str_cat.h"
#include "models/pricing/elasticity_model.h"
#include "server/model_rpcs.h"
#include "server/status_util.h"
#include "server/validation.h"

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

}  // namespace

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

}  // namespace mercato::server
