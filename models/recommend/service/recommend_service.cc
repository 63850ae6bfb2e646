// The recommendation module: its flags and the Recommender service
// (Recommend, SimilarItems, BoughtTogether).
#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/clock.h"
#include "core/recommendation_ref.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "models/recommend/recommend_model.h"
#include "server/model_module.h"
#include "server/status_util.h"
#include "server/validation.h"

ABSL_FLAG(int, rec_dim, 64, "Recommend: dimension of the iALS factors");
ABSL_FLAG(
    double, rec_unobserved_weight, 2048,
    "Recommend: iALS unobserved weight of a whole row (each pair gets this / number of items)");
ABSL_FLAG(double, rec_regularization, 0.01,
          "Recommend: iALS regularisation lambda (scaled by row frequency)");
ABSL_FLAG(int, rec_epochs, 8, "Recommend: epochs of a full retrain");
ABSL_FLAG(int, rec_tuning_trials, 12,
          "Recommend: configurations a hyperparameter search tries, the one in use included "
          "(at the first retrain and once interactions have doubled; 0 or 1 = no search)");
ABSL_FLAG(int, rec_tuning_holdout_users, 5000,
          "Recommend: customers a search ranks, at most, of those whose latest interaction it "
          "holds out (every active one)");
ABSL_FLAG(std::string, rec_pinned, "",
          "Recommend: hyperparameters the search leaves at their flags "
          "(comma separated: unobserved_weight, regularization, event_weights, "
          "decay_half_life_days)");
ABSL_FLAG(
    int64_t, rec_retrain_every, 200000,
    "Recommend: start a background retrain after this many interactions (0 = on request only)");
ABSL_FLAG(double, rec_decay_half_life_days, 235,
          "Recommend: an interaction's confidence halves over this age (0 = no decay)");
ABSL_FLAG(double, rec_popularity_half_life_days, 7, "Recommend: popularity halves over this long");
ABSL_FLAG(std::string, rec_event_weights,
          "view:1,click:1,add_to_cart:3,purchase:8,refund:-8,rating:2",
          "Recommend: confidence per event type (type:weight, comma separated; others 0)");
ABSL_FLAG(int, rec_min_support, 2,
          "BoughtTogether: fewest shared orders when a request gives none");
ABSL_FLAG(int64_t, rec_hnsw_min_items, 50000,
          "Recommend: use HNSW from this many items with factors (0 = exact scan only)");
ABSL_FLAG(bool, rec_item_features, true,
          "Recommend: the catalogue's category paths and attributes are item features, so that "
          "a new item is recommendable from its first upsert (false = interactions only)");
ABSL_FLAG(int, rec_hnsw_ef, 32, "Recommend: HNSW search breadth (ef)");
ABSL_FLAG(int, rec_hnsw_ef_construction, 200,
          "Recommend: HNSW build breadth (also used when fold-in moves an item)");

ABSL_FLAG(std::string, rec_experiment_arms, "",
          "Recommend: experiment arms a request may name, as name:policy pairs, comma separated; "
          "policy personal (the model with its fallbacks) or popular (the fallbacks alone); "
          "requests naming none are arm 'default', personal");

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
  absl::Status s =
      Named(CheckCount("", ids.size(), 0, max), [field] { return absl::StrCat(field, " (size)"); });
  for (int i = 0; s.ok() && i < ids.size(); ++i) {
    s = Named(CheckId("", ids[i]), [field, i] { return absl::StrCat(field, "[", i, "]"); });
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

// The arms of --rec_experiment_arms, "default" first.
struct ExperimentArms {
  std::vector<std::string> names = {core::kDefaultArm};
  std::vector<bool> popular_only = {false};
};

// Counts the answers Recommend gives per arm and source, and turns the
// counts into a RECOMMENDATIONS_SERVED record when the runtime collects
// them. Thread-safe.
class ServedAnswers {
 public:
  static constexpr int kSources = 8;
  explicit ServedAnswers(const ExperimentArms& arms)
      : arms_(arms.names), counts_(arms.names.size() * kSources) {}

  void Count(size_t arm, core::RecommendSource source) {
    counts_[arm * kSources + static_cast<size_t>(source)].fetch_add(1, std::memory_order_relaxed);
  }

  std::vector<core::Event> Collect() {
    std::vector<core::ServedCount> served;
    for (size_t a = 0; a < arms_.size(); ++a) {
      for (int source = 1; source < kSources; ++source) {
        const uint64_t n = counts_[a * kSources + source].exchange(0, std::memory_order_relaxed);
        if (n > 0) served.push_back({arms_[a], source, n});
      }
    }
    if (served.empty()) return {};
    core::Event e;
    e.type = core::EventType::kRecommendationsServed;
    e.timestamp_ms = core::Clock::Real()->NowMs();
    e.event_id = absl::StrCat("served/", absl::Hex(process_, absl::kZeroPad16), "/", ++records_);
    e.payload = core::EncodeServed(served);
    return {std::move(e)};
  }

 private:
  const std::vector<std::string> arms_;
  std::vector<std::atomic<uint64_t>> counts_;
  const uint64_t process_ = absl::Uniform<uint64_t>(absl::BitGen());
  uint64_t records_ = 0;  // the collecting thread's only
};

void ToProto(const std::vector<core::Recommendation>& recs, uint64_t version,
             v1::RecommendResponse* resp) {
  for (const core::Recommendation& r : recs) {
    v1::ScoredItem* item = resp->add_items();
    item->set_item_id(r.item_id);
    item->set_score(r.score);
    item->set_source(static_cast<v1::RecommendationSource>(r.source));
    if (!r.attribute.empty()) {
      v1::Explanation* e = item->add_because();
      e->set_attribute(r.attribute);
      e->set_contribution(r.attribute_share);
    }
    for (const auto& [id, share] : r.because) {
      v1::Explanation* e = item->add_because();
      e->set_item_id(id);
      e->set_contribution(share);
    }
  }
  resp->set_model_version(version);
}

// The index of the arm a request names, or INVALID_ARGUMENT.
absl::StatusOr<size_t> ArmOf(const ExperimentArms& arms, const std::string& name) {
  if (name.empty()) return 0;
  for (size_t a = 0; a < arms.names.size(); ++a) {
    if (arms.names[a] == name) return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("experiment_arm: not one of this server's arms (",
                                                 absl::StrJoin(arms.names, ", "),
                                                 "; --rec_experiment_arms)"));
}

UnaryHandler<v1::RecommendRequest, v1::RecommendResponse> RecommendHandler(
    Runtime* rt, const ExperimentArms& arms, std::shared_ptr<ServedAnswers> served) {
  return [rt, arms, served](grpc::ServerContext&, const v1::RecommendRequest& req,
                            v1::RecommendResponse* resp) {
    if (!rt->ready()) return NotReady();
    absl::StatusOr<size_t> arm = ArmOf(arms, req.experiment_arm());
    absl::Status s = arm.status();
    if (s.ok()) s = CheckOptionalId("user_id", req.user_id());
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
    q.popular_only = arms.popular_only[*arm];
    absl::StatusOr<std::vector<core::Recommendation>> recs = model->first->Recommend(q);
    if (!recs.ok()) return ToGrpcStatus(recs.status());
    ToProto(*recs, model->second, resp);
    if (!recs->empty()) {
      const core::RecommendSource source = recs->front().source;
      thread_local absl::InsecureBitGen nonces;
      resp->set_recommendation_id(core::FormatRecommendationId(
          {arms.names[*arm], static_cast<int>(source), core::Clock::Real()->NowMs(),
           absl::Uniform<uint64_t>(nonces)}));
      served->Count(*arm, source);
    }
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

// Parses --rec_event_weights into `weights`; false on a malformed entry.
bool ParseEventWeights(const std::string& spec,
                       std::array<float, core::kNumEventTypes>& weights) {
  weights.fill(0);
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits(':', 1));
    float w = 0;
    int type = 0;
    while (type <= core::kCountedTypes &&
           kv.first != core::EventTypeName(static_cast<core::EventType>(type))) {
      ++type;
    }
    if (type == 0 || type > core::kCountedTypes || !absl::SimpleAtof(kv.second, &w) ||
        !std::isfinite(w)) {
      return false;
    }
    weights[type] = w;
  }
  return true;
}

// Parses --rec_experiment_arms into `arms` (after "default").
absl::Status ParseArms(const std::string& spec, ExperimentArms& arms) {
  for (absl::string_view entry : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(entry, absl::MaxSplits(':', 1));
    kv.first = std::string(absl::StripAsciiWhitespace(kv.first));
    kv.second = std::string(absl::StripAsciiWhitespace(kv.second));
    absl::Status s =
        CheckFlag(core::IsArmName(kv.first), "rec_experiment_arms",
                  absl::StrCat("arm names are 1..32 of a-z, 0-9 and _, got '", kv.first, "'"));
    if (s.ok()) {
      s = CheckFlag(std::find(arms.names.begin(), arms.names.end(), kv.first) == arms.names.end(),
                    "rec_experiment_arms", absl::StrCat("arm '", kv.first, "' is named twice"));
    }
    if (s.ok()) {
      s = CheckFlag(kv.second == "personal" || kv.second == "popular", "rec_experiment_arms",
                    absl::StrCat("arm '", kv.first, "': policy must be personal or popular"));
    }
    if (!s.ok()) return s;
    arms.names.push_back(kv.first);
    arms.popular_only.push_back(kv.second == "popular");
  }
  return absl::OkStatus();
}

absl::Status RecommendFromFlags(ModuleOptions& options) {
  core::RecommendOptions& r = options.Mutable<core::RecommendOptions>();
  r.ials.dim = absl::GetFlag(FLAGS_rec_dim);
  r.ials.unobserved_weight = absl::GetFlag(FLAGS_rec_unobserved_weight);
  r.ials.regularization = absl::GetFlag(FLAGS_rec_regularization);
  r.ials.epochs = absl::GetFlag(FLAGS_rec_epochs);
  r.tuning.trials = std::max(0, absl::GetFlag(FLAGS_rec_tuning_trials));
  r.tuning.holdout_users =
      static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_rec_tuning_holdout_users)));
  bool pins_known = true;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_rec_pinned), ',', absl::SkipWhitespace())) {
    name = absl::StripAsciiWhitespace(name);
    if (name == "unobserved_weight") {
      r.tuning.pin_unobserved_weight = true;
    } else if (name == "regularization") {
      r.tuning.pin_regularization = true;
    } else if (name == "event_weights") {
      r.tuning.pin_event_weights = true;
    } else if (name == "decay_half_life_days") {
      r.tuning.pin_decay_half_life = true;
    } else {
      pins_known = false;
    }
  }
  r.ials.decay_half_life_days = absl::GetFlag(FLAGS_rec_decay_half_life_days);
  r.retrain_every =
      static_cast<uint64_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_rec_retrain_every)));
  r.popularity_half_life_days = absl::GetFlag(FLAGS_rec_popularity_half_life_days);
  r.min_support = static_cast<uint32_t>(std::max(1, absl::GetFlag(FLAGS_rec_min_support)));
  r.hnsw_min_items =
      static_cast<size_t>(std::max<int64_t>(0, absl::GetFlag(FLAGS_rec_hnsw_min_items)));
  r.item_features = absl::GetFlag(FLAGS_rec_item_features);
  r.hnsw.ef_search = absl::GetFlag(FLAGS_rec_hnsw_ef);
  r.hnsw.ef_construction = absl::GetFlag(FLAGS_rec_hnsw_ef_construction);
  absl::Status s =
      CheckFlag(ParseEventWeights(absl::GetFlag(FLAGS_rec_event_weights), r.ials.weights),
                "rec_event_weights",
                "must be type:weight pairs of view, click, add_to_cart, "
                "remove_from_cart, purchase, refund, rating");
  if (s.ok())
    s = ParseArms(absl::GetFlag(FLAGS_rec_experiment_arms), options.Mutable<ExperimentArms>());
  if (s.ok()) s = CheckFlag(r.ials.dim >= 1 && r.ials.dim <= 1024, "rec_dim", "must be 1..1024");
  if (s.ok()) {
    s = CheckFlag(
        pins_known, "rec_pinned",
        "must name unobserved_weight, regularization, event_weights or decay_half_life_days");
  }
  if (s.ok()) {
    s = CheckFlag(absl::GetFlag(FLAGS_rec_tuning_trials) >= 0, "rec_tuning_trials", "must be >= 0");
  }
  if (s.ok()) {
    s = CheckFlag(r.tuning.holdout_users >= core::kMinHoldoutUsers, "rec_tuning_holdout_users",
                  absl::StrCat("must be >= ", core::kMinHoldoutUsers));
  }
  if (s.ok()) {
    s = CheckFlag(r.ials.unobserved_weight >= 0, "rec_unobserved_weight", "must be >= 0");
  }
  if (s.ok()) s = CheckFlag(r.ials.regularization > 0, "rec_regularization", "must be > 0");
  if (s.ok()) s = CheckFlag(r.ials.epochs >= 1, "rec_epochs", "must be >= 1");
  if (s.ok()) {
    s = CheckFlag(r.ials.decay_half_life_days >= 0, "rec_decay_half_life_days", "must be >= 0");
  }
  if (s.ok()) {
    s = CheckFlag(r.popularity_half_life_days > 0, "rec_popularity_half_life_days",
                  "must be > 0");
  }
  if (s.ok()) s = CheckFlag(r.hnsw.ef_search >= 1, "rec_hnsw_ef", "must be >= 1");
  if (s.ok()) {
    s = CheckFlag(r.hnsw.ef_construction >= 1, "rec_hnsw_ef_construction", "must be >= 1");
  }
  return s;
}

void ServeRecommend(ServiceRegistrar& r) {
  using Raw = v1::Recommender::WithRawMethod_Recommend<v1::Recommender::WithRawMethod_SimilarItems<
      v1::Recommender::WithRawMethod_BoughtTogether<v1::Recommender::Service>>>;
  Raw* rec =
      r.Serve(std::make_unique<Raw>(), v1::Recommender::service_full_name(), Scope::kRecommend);
  const ExperimentArms& arms = r.options().Get<ExperimentArms>();
  auto served = std::make_shared<ServedAnswers>(arms);
  r.runtime()->AddRecordSource([served] { return served->Collect(); });
  r.Unary(rec, &Raw::RequestRecommend, "Recommend", RecommendHandler(r.runtime(), arms, served));
  r.Unary(rec, &Raw::RequestSimilarItems, "SimilarItems", SimilarItemsHandler(r.runtime()));
  r.Unary(rec, &Raw::RequestBoughtTogether, "BoughtTogether", BoughtTogetherHandler(r.runtime()));
}

}  // namespace

ModelModule RecommendModule() {
  return {.name = core::kRecommendModelName,
          .from_flags = RecommendFromFlags,
          .make = [](const ModuleOptions& o, const ModelDependencies&) -> std::unique_ptr<core::Model> {
            return std::make_unique<core::RecommendModel>(o.Get<core::RecommendOptions>());
          },
          .serve = ServeRecommend};
}

}  // namespace mercato::server
