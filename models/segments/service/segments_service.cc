// The segments module: its flags, Segmenter.Segment and ListSegments.
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "models/segments/segment_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(int, segments, mercato::core::SegmentOptions{}.k,
          "number of customer segments (k of k-means)");
ABSL_FLAG(int64_t, segment_refit_purchases, mercato::core::SegmentOptions{}.refit_every_purchases,
          "refit segments and customer value after this many purchases");
ABSL_FLAG(int, horizon_days, 90,
          "Segment: horizon of expected purchases and value when a request gives none");
ABSL_FLAG(double, discount_rate, 0.10, "Segment: yearly discount rate of customer value");

namespace mercato::server {
namespace {

constexpr int kMaxHorizonDays = 3650;

// How Segment answers, besides the model.
struct SegmentServing {
  // The horizon when a request gives none, and the yearly discount rate of
  // customer value.
  int horizon_days = 90;
  double annual_discount_rate = 0.10;
};

UnaryHandler<v1::SegmentRequest, v1::SegmentResponse> SegmentHandler(Runtime* rt,
                                                                    SegmentServing serving) {
  return [rt, serving](grpc::ServerContext&, const v1::SegmentRequest& req, v1::SegmentResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::Status s = CheckId("user_id", req.user_id());
    if (s.ok()) s = CheckCount("horizon_days", req.horizon_days(), 0, kMaxHorizonDays);
    if (s.ok()) s = CheckTenant("tenant", req.tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::SegmentView>(*snap, core::kSegmentModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    const int horizon =
        req.horizon_days() == 0 ? serving.horizon_days : static_cast<int>(req.horizon_days());
    absl::StatusOr<core::CustomerSegment> c =
        model->first->Segment(req.user_id(), horizon, serving.annual_discount_rate);
    if (!c.ok()) return ToGrpcStatus(c.status());
    resp->set_segment_id(c->segment_id);
    resp->set_label(c->label);
    resp->set_distance_to_centroid(c->distance);
    v1::Rfm* rfm = resp->mutable_rfm();
    rfm->set_recency_days(c->rfm.recency_days);
    rfm->set_frequency(c->rfm.frequency);
    rfm->set_monetary(c->rfm.monetary);
    rfm->set_recency_score(c->rfm.recency_score);
    rfm->set_frequency_score(c->rfm.frequency_score);
    rfm->set_monetary_score(c->rfm.monetary_score);
    resp->set_expected_purchases(c->expected_purchases);
    resp->set_probability_alive(c->probability_alive);
    resp->set_expected_average_spend(c->expected_average_spend);
    resp->set_customer_value(c->customer_value);
    resp->set_horizon_days(horizon);
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

UnaryHandler<v1::ListSegmentsRequest, v1::ListSegmentsResponse> ListSegmentsHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::ListSegmentsRequest& req,
              v1::ListSegmentsResponse* resp) {
    if (!rt->ready()) return NotReady();
    if (absl::Status s = CheckTenant("tenant", req.tenant()); !s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::SegmentView>(*snap, core::kSegmentModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    const core::SegmentFit* fit = model->first->fit();
    if (fit == nullptr) {
      return ToGrpcStatus(absl::FailedPreconditionError(
          "segments are not fitted yet: the first fit runs once enough customers have bought"));
    }
    std::vector<const core::SegmentProfileInfo*> by_id;
    for (const core::SegmentProfileInfo& p : fit->profiles) by_id.push_back(&p);
    std::sort(by_id.begin(), by_id.end(), [](auto* a, auto* b) { return a->id < b->id; });
    for (const core::SegmentProfileInfo* p : by_id) {
      v1::SegmentProfile* out = resp->add_segments();
      out->set_segment_id(p->id);
      out->set_label(p->label);
      out->set_size(p->size);
      out->mutable_centroid()->set_recency_days(p->mean[0]);
      out->mutable_centroid()->set_frequency(p->mean[1]);
      out->mutable_centroid()->set_monetary(p->mean[2]);
      for (int i = 0; i < core::kNumSegmentFeatures; ++i) {
        (*out->mutable_features())[core::kSegmentFeatureNames[i]] = p->mean[i];
      }
    }
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

absl::Status SegmentsFromFlags(ModuleOptions& options) {
  core::SegmentOptions& o = options.Mutable<core::SegmentOptions>();
  o.k = absl::GetFlag(FLAGS_segments);
  o.refit_every_purchases =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_segment_refit_purchases)));
  SegmentServing& serving = options.Mutable<SegmentServing>();
  serving.horizon_days = absl::GetFlag(FLAGS_horizon_days);
  serving.annual_discount_rate = absl::GetFlag(FLAGS_discount_rate);
  absl::Status s = CheckFlag(o.k >= 1 && o.k <= 64, "segments", "must be 1..64");
  if (s.ok()) {
    s = CheckFlag(serving.horizon_days >= 1 && serving.horizon_days <= kMaxHorizonDays,
                  "horizon_days", absl::StrCat("must be 1..", kMaxHorizonDays));
  }
  if (s.ok()) s = CheckFlag(serving.annual_discount_rate >= 0, "discount_rate", "must be >= 0");
  return s;
}

void ServeSegments(ServiceRegistrar& r) {
  using Raw = v1::Segmenter::WithRawMethod_Segment<
      v1::Segmenter::WithRawMethod_ListSegments<v1::Segmenter::Service>>;
  Raw* segmenter =
      r.Serve(std::make_unique<Raw>(), v1::Segmenter::service_full_name(), Scope::kSegment);
  r.Unary(segmenter, &Raw::RequestSegment, "Segment",
          SegmentHandler(r.runtime(), r.options().Get<SegmentServing>()));
  r.Unary(segmenter, &Raw::RequestListSegments, "ListSegments", ListSegmentsHandler(r.runtime()));
}

}  // namespace

ModelModule SegmentsModule() {
  return {.name = core::kSegmentModelName,
          .from_flags = SegmentsFromFlags,
          .make = [](const ModuleOptions& o, const ModelDependencies&) -> std::unique_ptr<core::Model> {
            return std::make_unique<core::SegmentModel>(o.Get<core::SegmentOptions>());
          },
          .serve = ServeSegments};
}

}  // namespace mercato::server
