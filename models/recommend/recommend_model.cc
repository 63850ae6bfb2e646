// Learning: the learner step (Apply), previews of held-back events,
// retrains and publication.
#include "models/recommend/recommend_model.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mercato::core {
namespace {

constexpr int kRowsPerBlock = 256;
// Attribute values longer than this (descriptions, say) are no features.
constexpr size_t kMaxFeatureValueBytes = 64;
// Distinct features at most (each has a row of the factors' dimension); a
// feature first seen past it is not one.
constexpr size_t kMaxFeatures = 65536;

}  // namespace

RecommendModel::RecommendModel(RecommendOptions options)
    : options_(std::move(options)),
      factors_(options_.ials),
      info_(1, kRowsPerBlock),
      support_(1, kRowsPerBlock),
      popularity_(options_.popularity_half_life_days),
      index_(options_.ials.dim, options_.hnsw, options_.hnsw_min_items) {}

bool RecommendModel::Uses(const Event& event) const {
  if (event.type == EventType::kItemUpdate || event.type == EventType::kUserDelete ||
      event.type == EventType::kItemDelete) {
    return true;
  }
  const int type = static_cast<int>(event.type);
  return type <= kCountedTypes && options_.ials.weights[type] != 0 && !event.user_id.empty() &&
         !event.item_id.empty();
}

bool RecommendModel::Preview(const Event& event) {
  if (!Uses(event)) return false;
  if (!serving_) serving_ = factors_;
  if (event.type == EventType::kUserDelete) {
    if (const std::optional<uint32_t> user = EraseUser(event)) serving_->ForgetUser(*user);
    return true;
  }
  if (event.type == EventType::kItemDelete) return false;  // catalogue facts wait with the events
  const uint32_t item = items_.FindOrAdd(event.item_id);
  GrowItems();
  if (event.type == EventType::kItemUpdate) return false;
  serving_->Observe(UserRow(event), item, event.type, event.timestamp_ms);
  return true;
}

bool RecommendModel::Apply(const Event& event) {
  position_ = event.sequence;
  if (!Uses(event)) return false;
  if (event.type == EventType::kItemUpdate) {
    ApplyItemUpdate(event);
  } else if (event.type == EventType::kItemDelete) {
    const std::optional<uint32_t> item = items_.Find(event.item_id);
    if (!item) return false;
    info_.MutableRow(*item)->deleted = true;
  } else if (event.type == EventType::kUserDelete) {
    const std::optional<uint32_t> user = EraseUser(event);
    // Every event before it is applied now.
    std::erase_if(erasing_, [&](const Erasing& e) { return e.delete_sequence <= event.sequence; });
    if (!user) return false;
    for (uint32_t item : factors_.ForgetUser(*user)) SetSupport(item);
    retrain_.Forget(*user);
  } else {
    ApplyInteraction(event, items_.FindOrAdd(event.item_id));
  }
  return true;
}

void RecommendModel::GrowItems() {
  const size_t n = items_.size();
  info_.Resize(n);
  support_.Resize(n);
  popularity_.Resize(n, categories_.size());
  co_purchase_.Resize(n);
}

void RecommendModel::ApplyItemUpdate(const Event& event) {
  const uint32_t item = items_.FindOrAdd(event.item_id);
  ItemInfo info;
  info.price = static_cast<float>(event.unit_price);
  info.in_stock = event.quantity > 0;
  std::vector<std::string> path = CategoryPath(event);
  size_t depth = 0;
  for (const std::string& name : path) {
    if (name.empty() || depth == info.path.size()) continue;
    info.path[depth++] = categories_.FindOrAdd(name);
  }
  GrowItems();  // the new item and categories
  ItemInfo& slot = *info_.MutableRow(item);
  popularity_.Move(item, slot, info);
  slot = info;
  if (!options_.item_features) return;
  // Its features: the whole category path (the parents' would pull the
  // item toward everything below them), then the attributes by name.
  ItemFeatures features;
  int n = 0;
  const auto add = [&](const std::string& name) {
    if (n == kMaxItemFeatures) return;
    if (features_.size() >= kMaxFeatures && !features_.Find(name)) return;
    features.ids[n++] = features_.FindOrAdd(name) + 1;
  };
  if (!path.empty()) add(absl::StrCat("category=", absl::StrJoin(path, " > ")));
  for (const auto& [name, value] : event.attributes) {
    if (!value.empty() && value.size() <= kMaxFeatureValueBytes) {
      add(absl::StrCat(name, "=", value));
    }
  }
  factors_.SetItemFeatures(item, features);
  retrain_.SetItemFeatures(item, features);
  index_.Changed(factors_.TakeChangedItems());
  SetSupport(item);
}

std::optional<uint32_t> RecommendModel::EraseUser(const Event& event) {
  for (const Erasing& e : erasing_) {
    if (e.delete_sequence == event.sequence) return e.row;  // previewed already
  }
  const std::optional<uint32_t> row =
      RenameErased(users_, event.user_id, ErasedName(event.sequence));
  if (row) erasing_.push_back({event.user_id, event.sequence, *row});
  return row;
}

uint32_t RecommendModel::UserRow(const Event& event) {
  const Erasing* first = nullptr;
  for (const Erasing& e : erasing_) {
    if (e.user_id == event.user_id && event.sequence < e.delete_sequence &&
        (first == nullptr || e.delete_sequence < first->delete_sequence)) {
      first = &e;
    }
  }
  return first ? first->row : users_.FindOrAdd(event.user_id);
}

void RecommendModel::ApplyInteraction(const Event& event, uint32_t item) {
  const uint32_t user = UserRow(event);
  GrowItems();
  factors_.Observe(user, item, event.type, event.timestamp_ms);
  retrain_.Observe(user, item, event.type, event.timestamp_ms);
  const float weight = options_.ials.weights[static_cast<int>(event.type)];
  index_.Changed(factors_.TakeChangedItems());
  SetSupport(item);
  if (weight > 0) popularity_.Add(item, weight, event.timestamp_ms, *info_.Row(item));
  if (event.type == EventType::kPurchase) co_purchase_.Add(event.order_id, item);
  ++interactions_since_retrain_;
  // A retrain due while the last one runs starts at the first interaction
  // after that one is adopted: both points fixed by the log.
  if (!retrain_.running() && FitDue(options_.retrain_every, {interactions_since_retrain_, true})) {
    StartRetrain();
  }
  // Never both at one log position: each fit's FIT_DONE names its start.
  if (!retrain_.running() && index_.RebuildDue(position_, items_with_factors_)) {
    index_.StartRebuild(position_, factors_.Freeze().items, support_.Freeze(),
                        options_.index_adopt_after_events, options_.background);
  }
}

void RecommendModel::SetSupport(uint32_t item) {
  const uint32_t now = factors_.HasRow(item) ? 1 : 0;
  if (*support_.Row(item) == now) return;  // a row written is a block copied
  *support_.MutableRow(item) = now;
  if (now) {
    ++items_with_factors_;
  } else {
    --items_with_factors_;
  }
}

void RecommendModel::StartRetrain() {
  interactions_since_retrain_ = 0;
  index_.Supersede();  // the retrain indexes its own result
  RetrainRun::IndexBuilder build;
  if (index_.Wanted(items_with_factors_)) {
    build = [this](const IalsState& state, const std::atomic<bool>& stop) {
      return index_.Build(
          state.num_items(),
          [&](uint32_t i) { return state.HasRow(i) ? state.item_row(i) : nullptr; }, stop);
    };
  }
  std::optional<IalsTuningOptions> tune;
  if (options_.tuning.enabled() && (!tuning_ || CountPairs(factors_) >= 2 * tuning_->pairs)) {
    tune = options_.tuning;
  }
  retrain_.Start(position_, factors_, options_.ials.epochs, options_.adopt_after_events,
                 options_.background, tune, std::move(build));
}

void RecommendModel::UseTuning(std::shared_ptr<const IalsTuning> tuning) {
  tuning_ = std::move(tuning);
  // What a search could not change stays at its flags.
  IalsHyperparameters h = tuning_->adopted().hyperparameters;
  const IalsTuningOptions& pins = options_.tuning;
  if (pins.pin_unobserved_weight) h.unobserved_weight = options_.ials.unobserved_weight;
  if (pins.pin_regularization) h.regularization = options_.ials.regularization;
  if (pins.pin_decay_half_life) h.decay_half_life_days = options_.ials.decay_half_life_days;
  if (pins.pin_event_weights) h.weights = options_.ials.weights;
  factors_.SetHyperparameters(h);
}

void RecommendModel::AdoptRetrain(TrainedFactors trained) {
  factors_ = std::move(trained.state);
  if (trained.tuning) UseTuning(std::make_shared<const IalsTuning>(*std::move(trained.tuning)));
  index_.AdoptRetrained(std::move(trained.index));
  index_.Changed(factors_.TakeChangedItems());  // by the tail replayed onto it
  // Items without interactions have their priors, fitted again.
  for (uint32_t i = 0; i < items_.size(); ++i) SetSupport(i);
  ++retrains_;
  last_retrain_ = trained.run;
}

FitGate RecommendModel::Gate(uint64_t sequence) {
  // The index first: its adoption leaves the previewed factors as they are.
  const FitGate index = index_.Gate(sequence);
  if (index == FitGate::kWait) return index;
  const FitGate retrain =
      retrain_.Gate(sequence, [this](TrainedFactors trained) { AdoptRetrain(std::move(trained)); });
  if (retrain == FitGate::kAdopted) serving_.reset();  // what was previewed is applied next
  return retrain == FitGate::kOpen ? index : retrain;
}

std::optional<uint64_t> RecommendModel::FinishedFit() const {
  const std::optional<uint64_t> retrain = retrain_.Finished(), index = index_.Finished();
  if (retrain && index) return std::min(*retrain, *index);
  return retrain ? retrain : index;
}

void RecommendModel::FitDoneAt(uint64_t started, uint64_t sequence) {
  retrain_.DoneAt(started, sequence);
  index_.DoneAt(started, sequence);
}

void RecommendModel::Retrain() {
  if (!retrain_.running()) StartRetrain();
}

void RecommendModel::Abandon() {
  retrain_.Abandon();
  index_.Abandon();
}

void RecommendModel::RetrainNow() {
  const auto adopt = [this](TrainedFactors trained) { AdoptRetrain(std::move(trained)); };
  retrain_.Finish(adopt);
  const bool background = options_.background;
  options_.background = false;
  StartRetrain();
  options_.background = background;
  retrain_.Finish(adopt);
}

std::shared_ptr<const ModelView> RecommendModel::Publish() {
  auto view = std::make_shared<RecommendView>();
  view->options_ = options_;
  view->options_.ials = factors_.options();  // with the hyperparameters in use
  view->users_ = users_.Freeze();
  view->items_ = items_.Freeze();
  view->categories_ = categories_.Freeze();
  view->features_ = features_.Freeze();
  view->factors_ = factors_.Freeze();
  if (serving_) {
    view->unserved_factors_ = std::exchange(view->factors_, serving_->Freeze());
    serving_->TakeChangedItems();  // stale items are those of factors_
  }
  view->info_ = info_.Freeze();
  view->support_ = support_.Freeze();
  view->popularity_ = popularity_.Freeze();
  view->co_purchase_ = co_purchase_.Freeze();
  view->interactions_since_retrain_ = interactions_since_retrain_;
  view->retrains_ = retrains_;
  view->last_retrain_ = last_retrain_;
  view->running_ = retrain_.status() ? retrain_.status() : index_.rebuild_status();
  view->index_ = index_.Freeze();
  view->tuning_ = tuning_;
  return view;
}

}  // namespace mercato::core
