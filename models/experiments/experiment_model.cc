#include "models/experiments/experiment_model.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/bytes.h"
#include "core/recommendation_ref.h"

namespace mercato::core {
namespace {

constexpr uint8_t kFormat = 1;

}  // namespace

bool ExperimentModel::Apply(const Event& event) {
  if (event.type == EventType::kRecommendationsServed) {
    const std::vector<ServedCount> served = DecodeServed(event.payload);
    for (const ServedCount& c : served) outcomes_[{c.arm, c.source}].answers += c.answers;
    if (!served.empty()) published_.reset();
    return !served.empty();
  }
  if (event.recommendation_id.empty()) return false;
  const std::optional<RecommendationRef> ref = ParseRecommendationId(event.recommendation_id);
  if (!ref) return false;  // Ingest takes only ids Recommend gives
  uint64_t ArmOutcome::*counter = nullptr;
  switch (event.type) {
    case EventType::kView:
    case EventType::kClick:
      counter = &ArmOutcome::clicks;
      break;
    case EventType::kAddToCart:
      counter = &ArmOutcome::carts;
      break;
    case EventType::kPurchase:
      counter = &ArmOutcome::purchases;
      break;
    default:
      return false;
  }
  ArmOutcome& o = outcomes_[{ref->arm, ref->source}];
  published_.reset();
  if (event.timestamp_ms < ref->served_ms ||
      event.timestamp_ms - ref->served_ms > options_.attribution_window_ms) {
    ++o.late;
    return true;
  }
  ++(o.*counter);
  if (event.type == EventType::kPurchase) o.revenue += event.quantity * event.unit_price;
  return true;
}

std::shared_ptr<const ModelView> ExperimentModel::Publish() {
  if (!published_) published_ = std::make_shared<const ArmOutcomes>(outcomes_);
  auto view = std::make_shared<ExperimentView>();
  view->options_ = options_;
  view->outcomes_ = published_;
  return view;
}

std::string ExperimentView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormat);
  w.Varint(outcomes_->size());
  for (const auto& [key, o] : *outcomes_) {
    w.Str(key.first);
    w.Varint(static_cast<uint64_t>(key.second));
    for (uint64_t n : {o.answers, o.clicks, o.carts, o.purchases, o.late}) w.Varint(n);
    w.F64(o.revenue);
  }
  return out;
}

absl::Status ExperimentModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  if (r.U8() != kFormat) return absl::DataLossError("experiments checkpoint: unknown format");
  ArmOutcomes next;
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    std::string arm = r.Str();
    const uint64_t source = r.Varint();
    ArmOutcome o;
    for (uint64_t* x : {&o.answers, &o.clicks, &o.carts, &o.purchases, &o.late}) *x = r.Varint();
    o.revenue = r.F64();
    if (!IsArmName(arm) || source > 255 || !std::isfinite(o.revenue)) r.Invalidate();
    next[{std::move(arm), static_cast<int>(source)}] = o;
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("experiments checkpoint: trailing bytes");
  outcomes_ = std::move(next);
  published_.reset();
  return absl::OkStatus();
}

std::vector<std::pair<std::string, uint64_t>> ExperimentView::Counts() const {
  uint64_t answers = 0, attributed = 0, late = 0;
  for (const auto& [key, o] : *outcomes_) {
    answers += o.answers;
    attributed += o.clicks + o.carts + o.purchases;
    late += o.late;
  }
  return {{"arms_and_sources", outcomes_->size()},
          {"answers", answers},
          {"attributed_events", attributed},
          {"late_events", late}};
}

std::vector<MetricSample> ExperimentView::Samples() const {
  std::vector<MetricSample> out;
  for (const auto& [key, o] : *outcomes_) {
    const std::vector<std::pair<std::string, std::string>> labels = {
        {"arm", key.first}, {"source", SourceName(key.second)}};
    const auto add = [&](const char* family, const char* help, double value) {
      out.push_back({family, help, labels, value});
    };
    add("mercato_experiment_answers", "Recommend answers served, per experiment arm and source",
        static_cast<double>(o.answers));
    add("mercato_experiment_clicks",
        "Views and clicks attributed to recommendations within the window, per arm and source",
        static_cast<double>(o.clicks));
    add("mercato_experiment_carts", "Add-to-cart events attributed to recommendations",
        static_cast<double>(o.carts));
    add("mercato_experiment_purchases", "Purchases attributed to recommendations",
        static_cast<double>(o.purchases));
    add("mercato_experiment_revenue", "Revenue of the purchases attributed to recommendations",
        o.revenue);
    add("mercato_experiment_late_events",
        "Events naming a recommendation served longer ago than the attribution window",
        static_cast<double>(o.late));
  }
  return out;
}

}  // namespace mercato::core
