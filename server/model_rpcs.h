// The model RPCs' handlers: validate the request, read the served snapshot,
// ask the model's view, convert. One factory per RPC; server.cc registers
// them on the completion-queue dispatcher.
#ifndef MERCATO_SERVER_MODEL_RPCS_H_
#define MERCATO_SERVER_MODEL_RPCS_H_

#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/snapshot.h"
#include "mercato/v1/fraud.pb.h"
#include "mercato/v1/pricing.pb.h"
#include "mercato/v1/recommender.pb.h"
#include "mercato/v1/segmenter.pb.h"
#include "server/async_unary.h"
#include "server/metrics.h"
#include "server/runtime.h"

namespace mercato::server {

// UNAVAILABLE while the runtime recovers.
grpc::Status NotReady();

// Model `name` of `snap` as view type V, with its version.
template <class V>
absl::StatusOr<std::pair<const V*, uint64_t>> ServedModel(const core::Snapshot& snap,
                                                          std::string_view name) {
  const core::PublishedModel* model = snap.Find(name);
  const V* view = model ? dynamic_cast<const V*>(model->view.get()) : nullptr;
  if (view == nullptr) {
    return absl::InternalError(absl::StrCat("no ", std::string(name), " model is served"));
  }
  return std::make_pair(view, model->version);
}

// What an accepted event is worth telling its sender, given the models as
// served (`snap`); empty when nothing. Ingest lists these in its notes.
std::string EventNote(const core::Snapshot& snap, const core::Event& event);

UnaryHandler<v1::PriceElasticityRequest, v1::PriceElasticityResponse> PriceElasticityHandler(
    Runtime* rt);
UnaryHandler<v1::SegmentRequest, v1::SegmentResponse> SegmentHandler(Runtime* rt);
// `metrics` (may be null) counts the decisions.
UnaryHandler<v1::Order, v1::ScoreResponse> ScoreHandler(Runtime* rt, Metrics* metrics);
UnaryHandler<v1::RecommendRequest, v1::RecommendResponse> RecommendHandler(Runtime* rt);
UnaryHandler<v1::SimilarItemsRequest, v1::RecommendResponse> SimilarItemsHandler(Runtime* rt);
UnaryHandler<v1::BoughtTogetherRequest, v1::BoughtTogetherResponse> BoughtTogetherHandler(
    Runtime* rt);
UnaryHandler<v1::ListSegmentsRequest, v1::ListSegmentsResponse> ListSegmentsHandler(Runtime* rt);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODEL_RPCS_H_
