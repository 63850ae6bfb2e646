// The experiments module: its flag and the Experiments service (GetResults):
// the outcomes the experiments model counts, with rates, their intervals
// and the leading arm.
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "mercato/v1/experiments.grpc.pb.h"
#include "models/experiments/experiment_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(double, exp_attribution_window_h, 24,
          "Experiments: an event counts for a recommendation served at most this many hours "
          "before it (event time)");

namespace mercato::server {
namespace {

constexpr double kZ95 = 1.959963984540054;

// successes / trials with its Wilson score interval (successes capped at
// trials).
void SetRate(uint64_t successes, uint64_t trials, v1::Rate* out) {
  if (trials == 0) return;
  const double n = static_cast<double>(trials);
  const double p = static_cast<double>(successes) / n;
  const double q = std::min(p, 1.0);
  const double z2 = kZ95 * kZ95;
  const double centre = (q + z2 / (2 * n)) / (1 + z2 / n);
  const double half = kZ95 * std::sqrt(q * (1 - q) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  out->set_value(p);
  out->set_low(std::max(0.0, centre - half));
  out->set_high(std::min(1.0, centre + half));
}

void Fill(const std::string& arm, int source, const core::ArmOutcome& o,
          v1::ExperimentResult* out) {
  out->set_arm(arm);
  out->set_source(static_cast<v1::RecommendationSource>(source));
  out->set_answers(o.answers);
  out->set_clicks(o.clicks);
  out->set_carts(o.carts);
  out->set_purchases(o.purchases);
  out->set_revenue(o.revenue);
  out->set_late_events(o.late);
  SetRate(o.clicks, o.answers, out->mutable_click_rate());
  SetRate(o.purchases, o.answers, out->mutable_purchase_rate());
  out->set_revenue_per_answer(o.answers > 0 ? o.revenue / static_cast<double>(o.answers) : 0);
}

// Whether click rate a beats b at the 5% level (pooled two-proportion z).
bool Beats(const v1::ExperimentResult& a, const v1::ExperimentResult& b) {
  const double na = static_cast<double>(a.answers()), nb = static_cast<double>(b.answers());
  const double pa = std::min(1.0, a.click_rate().value()),
               pb = std::min(1.0, b.click_rate().value());
  const double pooled = (pa * na + pb * nb) / (na + nb);
  const double se = std::sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb));
  return se > 0 && (pa - pb) / se > kZ95;
}

UnaryHandler<v1::GetExperimentResultsRequest, v1::GetExperimentResultsResponse> ResultsHandler(
    Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::GetExperimentResultsRequest& req,
              v1::GetExperimentResultsResponse* resp) {
    if (!rt->ready()) return NotReady();
    if (absl::Status s = CheckTenant("tenant", req.tenant()); !s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::ExperimentView>(*snap, core::kExperimentModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    std::map<std::string, core::ArmOutcome> arms;
    for (const auto& [key, o] : model->first->outcomes()) {
      Fill(key.first, key.second, o, resp->add_by_source());
      core::ArmOutcome& total = arms[key.first];
      total.answers += o.answers;
      total.clicks += o.clicks;
      total.carts += o.carts;
      total.purchases += o.purchases;
      total.late += o.late;
      total.revenue += o.revenue;
    }
    const v1::ExperimentResult* first = nullptr;
    const v1::ExperimentResult* second = nullptr;
    for (const auto& [arm, o] : arms) {
      v1::ExperimentResult* r = resp->add_arms();
      Fill(arm, 0, o, r);
    }
    for (const v1::ExperimentResult& r : resp->arms()) {
      if (r.answers() == 0) continue;
      if (first == nullptr || r.click_rate().value() > first->click_rate().value()) {
        second = first;
        first = &r;
      } else if (second == nullptr || r.click_rate().value() > second->click_rate().value()) {
        second = &r;
      }
    }
    if (second != nullptr) {
      resp->set_leading_arm(first->arm());
      resp->set_leading_arm_significant(Beats(*first, *second));
    }
    resp->set_attribution_window_ms(model->first->attribution_window_ms());
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

absl::Status ExperimentsFromFlags(ModuleOptions& options) {
  const double hours = absl::GetFlag(FLAGS_exp_attribution_window_h);
  options.Mutable<core::ExperimentOptions>().attribution_window_ms =
      static_cast<int64_t>(hours * 3600 * 1000);
  return CheckFlag(hours > 0 && hours <= 24 * 365, "exp_attribution_window_h",
                   "must be > 0 and at most a year");
}

void ServeExperiments(ServiceRegistrar& r) {
  using Raw = v1::Experiments::WithRawMethod_GetResults<v1::Experiments::Service>;
  Raw* service =
      r.Serve(std::make_unique<Raw>(), v1::Experiments::service_full_name(), Scope::kAdmin);
  r.Unary(service, &Raw::RequestGetResults, "GetResults", ResultsHandler(r.runtime()));
}

}  // namespace

ModelModule ExperimentsModule() {
  return {
      .name = core::kExperimentModelName,
      .from_flags = ExperimentsFromFlags,
      .make = [](const ModuleOptions& o, const ModelDependencies&) -> std::unique_ptr<core::Model> {
        return std::make_unique<core::ExperimentModel>(o.Get<core::ExperimentOptions>());
      },
      .serve = ServeExperiments};
}

}  // namespace mercato::server
