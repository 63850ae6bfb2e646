#include "absl/strings/str_cat.h"
#include "models/segments/segment_model.h"
#include "server/model_rpcs.h"
#include "server/status_util.h"
#include "server/validation.h"

namespace mercato::server {
namespace {

constexpr int kMaxHorizonDays = 3650;

}  // namespace

UnaryHandler<v1::SegmentRequest, v1::SegmentResponse> SegmentHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::SegmentRequest& req, v1::SegmentResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::Status s = CheckId("user_id", req.user_id());
    if (s.ok()) s = CheckCount("horizon_days", req.horizon_days(), 0, kMaxHorizonDays);
    if (s.ok()) s = CheckTenant("tenant", req.tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::SegmentView>(*snap, core::kSegmentModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    const int horizon =
        req.horizon_days() == 0 ? rt->options().horizon_days : static_cast<int>(req.horizon_days());
    absl::StatusOr<core::CustomerSegment> c =
        model->first->Segment(req.user_id(), horizon, rt->options().annual_discount_rate);
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

}  // namespace mercato::server
