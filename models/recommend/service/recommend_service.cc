// Recommender RPCs: Recommend, SimilarItems, BoughtTogether.
#include "absl/strings/str_cat.h"
#include "models/recommend/recommend_model.h"
#include "server/model_rpcs.h"
#include "server/status_util.h"
#include "server/validation.h"

namespace mercato::server {
namespace {

constexpr int kMaxCount = 1000;
constexpr int kMaxContextItems = 100;
constexpr int kMaxCandidates = 1000;
constexpr int kMaxFilterCategories = 100;
constexpr int kMaxExcluded = 1000;
constexpr double kMaxPrice = 1e9;

absl::Status CheckIds(absl::string_view field, const google::protobuf::RepeatedPtrField<std::string>& ids,
                      int max) {
  absl::Status s = CheckCount(absl::StrCat(field, " (size)"), ids.size(), 0, max);
  for (int i = 0; s.ok() && i < ids.size(); ++i) {
    s = CheckId(absl::StrCat(field, "[", i, "]"), ids[i]);
  }
  return s;
}

absl::StatusOr<core::ItemFilter> ToCoreFilter(const v1::ItemFilter& in) {
  absl::Status s = CheckIds("filter.categories", in.categories(), kMaxFilterCategories);
  if (s.ok()) s = CheckNumber("filter.min_price", in.min_price(), 0, kMaxPrice);
  if (s.ok()) s = CheckNumber("filter.max_price", in.max_price(), 0, kMaxPrice);
  if (s.ok() && in.max_price() > 0 && in.min_price() > in.max_price()) {
    s = absl::InvalidArgumentError(absl::StrCat("filter.max_price: must be at least min_price (",
                                                in.min_price(), "), got ", in.max_price()));
  }
  if (s.ok()) s = CheckIds("filter.exclude_item_ids", in.exclude_item_ids(), kMaxExcluded);
  if (!s.ok()) return s;
  core::ItemFilter out;
  out.categories.assign(in.categories().begin(), in.categories().end());
  out.min_price = in.min_price();
  out.max_price = in.max_price();
  out.in_stock_only = in.in_stock_only();
  out.exclude_item_ids.assign(in.exclude_item_ids().begin(), in.exclude_item_ids().end());
  out.exclude_purchased = in.exclude_purchased();
  out.exclude_seen = in.exclude_seen();
  return out;
}

void ToProto(const std::vector<core::Recommendation>& recs, uint64_t version,
             v1::RecommendResponse* resp) {
  for (const core::Recommendation& r : recs) {
    v1::ScoredItem* item = resp->add_items();
    item->set_item_id(r.item_id);
    item->set_score(r.score);
    item->set_source(static_cast<v1::RecommendationSource>(r.source));
    for (const auto& [id, share] : r.because) {
      v1::Explanation* e = item->add_because();
      e->set_item_id(id);
      e->set_contribution(share);
    }
  }
  resp->set_model_version(version);
}

}  // namespace

UnaryHandler<v1::RecommendRequest, v1::RecommendResponse> RecommendHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::RecommendRequest& req, v1::RecommendResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::Status s = CheckOptionalId("user_id", req.user_id());
    if (s.ok()) s = CheckIds("context_item_ids", req.context_item_ids(), kMaxContextItems);
    if (s.ok() && req.user_id().empty() && req.context_item_ids().empty()) {
      s = absl::InvalidArgumentError(
          "user_id: required unless context_item_ids gives the session's items");
    }
    if (s.ok()) s = CheckCount("count", req.count(), 1, kMaxCount);
    if (s.ok()) s = CheckIds("candidate_item_ids", req.candidate_item_ids(), kMaxCandidates);
    if (s.ok()) s = CheckTenant("tenant", req.tenant());
    absl::StatusOr<core::ItemFilter> filter = ToCoreFilter(req.filter());
    if (s.ok()) s = filter.status();
    if (!s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::RecommendView>(*snap, core::kRecommendModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    core::RecommendQuery q;
    q.user_id = req.user_id();
    q.context_item_ids.assign(req.context_item_ids().begin(), req.context_item_ids().end());
    q.count = req.count();
    q.filter = *std::move(filter);
    q.candidate_item_ids.assign(req.candidate_item_ids().begin(), req.candidate_item_ids().end());
    q.explain = req.explain();
    absl::StatusOr<std::vector<core::Recommendation>> recs = model->first->Recommend(q);
    if (!recs.ok()) return ToGrpcStatus(recs.status());
    ToProto(*recs, model->second, resp);
    return grpc::Status::OK;
  };
}

UnaryHandler<v1::SimilarItemsRequest, v1::RecommendResponse> SimilarItemsHandler(Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::SimilarItemsRequest& req,
              v1::RecommendResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::Status s = CheckId("item_id", req.item_id());
    if (s.ok()) s = CheckCount("count", req.count(), 1, kMaxCount);
    if (s.ok()) s = CheckTenant("tenant", req.tenant());
    absl::StatusOr<core::ItemFilter> filter = ToCoreFilter(req.filter());
    if (s.ok()) s = filter.status();
    if (!s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::RecommendView>(*snap, core::kRecommendModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    absl::StatusOr<std::vector<core::Recommendation>> recs =
        model->first->SimilarItems(req.item_id(), req.count(), *filter);
    if (!recs.ok()) return ToGrpcStatus(recs.status());
    ToProto(*recs, model->second, resp);
    return grpc::Status::OK;
  };
}

UnaryHandler<v1::BoughtTogetherRequest, v1::BoughtTogetherResponse> BoughtTogetherHandler(
    Runtime* rt) {
  return [rt](grpc::ServerContext&, const v1::BoughtTogetherRequest& req,
              v1::BoughtTogetherResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::Status s = CheckId("item_id", req.item_id());
    if (s.ok()) s = CheckCount("count", req.count(), 1, kMaxCount);
    if (s.ok()) s = CheckTenant("tenant", req.tenant());
    if (!s.ok()) return ToGrpcStatus(s);
    const std::shared_ptr<const core::Snapshot> snap = rt->learner().snapshot();
    auto model = ServedModel<core::RecommendView>(*snap, core::kRecommendModelName);
    if (!model.ok()) return ToGrpcStatus(model.status());
    absl::StatusOr<std::vector<core::ItemAssociation>> pairs =
        model->first->BoughtTogether(req.item_id(), req.count(), req.min_support());
    if (!pairs.ok()) return ToGrpcStatus(pairs.status());
    for (const core::ItemAssociation& a : *pairs) {
      v1::Association* out = resp->add_items();
      out->set_item_id(a.item_id);
      out->set_support(a.support);
      out->set_confidence(a.confidence);
      out->set_lift(a.lift);
    }
    resp->set_model_version(model->second);
    return grpc::Status::OK;
  };
}

}  // namespace mercato::server
