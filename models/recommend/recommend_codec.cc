// The recommendation model's checkpoint format, versioned by its first
// byte: 1 (the index and waiting events optional at the end, read when no
// event waited), 2 (the index always, nothing after it), 3 (the index with
// its stale items and rebuild counts, item_index.h), 4 (then the last
// hyperparameter search, ials_tuning.h, when one was adopted), 5 (then the
// catalogue features: their names, rows and each item's), 6 (the
// hyperparameters in use after the dictionaries, each interaction's event
// counts, and each trial's event weights and half-life). The index of formats 1
// and 2 was kept current by upserts and is dropped, to be rebuilt at a log
// position. A format-1 state written while events waited for a retrain is
// refused (FAILED_PRECONDITION) and rebuilt from the log.
// tests/storage/testdata/checkpoint-format1 keeps a checkpoint of format 1.
#include <algorithm>
#include <string>
#include <utility>

#include "core/bytes.h"
#include "models/recommend/recommend_model.h"

namespace mercato::core {
namespace {

constexpr uint8_t kFormat = 6;

void EncodeRanked(ByteWriter& w, const RankedItems* list) {
  w.Varint(list ? list->size() : 0);
  if (!list) return;
  for (const auto& [score, item] : *list) {
    w.F64(score);
    w.Varint(item);
  }
}

RankedItems DecodeRanked(ByteReader& r, size_t items) {
  RankedItems list;
  const uint64_t n = r.Varint();
  for (uint64_t i = 0; i < n && r.status().ok(); ++i) {
    const double score = r.F64();
    const uint64_t item = r.Varint();
    if (item >= items) r.Invalidate();
    list.push_back({score, static_cast<uint32_t>(item)});
  }
  return list;
}

}  // namespace

std::string RecommendView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormat);
  for (const IdDictionaryView* d : {&users_, &items_, &categories_}) {
    w.Varint(d->size());
    for (uint32_t i = 0; i < d->size(); ++i) w.Str(d->Name(i));
  }
  options_.ials.hyperparameters().Encode(w);
  (unserved_factors_ ? *unserved_factors_ : factors_).Encode(w);
  w.F64(popularity_.anchor_ms);
  for (uint32_t i = 0; i < items_.size(); ++i) {
    const ItemInfo& info = *info_.Row(i);
    w.F32(info.price);
    w.U8((info.in_stock ? 1 : 0) | (info.deleted ? 2 : 0));
    for (uint32_t c : info.path) w.Varint(c == ItemInfo::kNoCategory ? 0 : uint64_t{c} + 1);
    w.F64(*popularity_.scores.Row(i));
    const std::shared_ptr<const CoCounts>& co = *co_purchase_.co_counts.Row(i);
    w.Varint(co ? co->size() : 0);
    if (co) {
      for (const auto& [other, n] : *co) {
        w.Varint(other);
        w.Varint(n);
      }
    }
    w.Varint(*co_purchase_.orders_with.Row(i));
  }
  EncodeRanked(w, popularity_.overall.get());
  for (uint32_t c = 0; c < categories_.size(); ++c) {
    EncodeRanked(w, popularity_.by_category.Row(c)->get());
  }
  w.Varint(co_purchase_.orders);
  w.Varint(co_purchase_.open_orders->size());
  for (const auto& [id, items] : *co_purchase_.open_orders) {
    w.Str(id);
    w.Varint(items.size());
    for (uint32_t i : items) w.Varint(i);
  }
  w.Varint(interactions_since_retrain_);
  w.Varint(retrains_);
  index_.Encode(w);
  w.U8(tuning_ ? 1 : 0);
  if (tuning_) tuning_->Encode(w);
  w.Varint(features_.size());
  for (uint32_t i = 0; i < features_.size(); ++i) w.Str(features_.Name(i));
  (unserved_factors_ ? *unserved_factors_ : factors_).EncodeFeatures(w);
  return out;
}

absl::Status RecommendModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t format = r.U8();
  if (format < 1 || format > kFormat) {
    return absl::DataLossError("recommend checkpoint: unknown format");
  }
  RecommendModel next(options_);
  for (IdDictionary* d : {&next.users_, &next.items_, &next.categories_}) {
    const uint64_t n = r.Varint();
    for (uint64_t i = 0; i < n && r.status().ok(); ++i) d->FindOrAdd(r.Str());
  }
  if (format >= 6) next.factors_ = IalsState(options_.ials.With(IalsHyperparameters::Decode(r)));
  next.factors_.Decode(r, format >= 6);
  const size_t items = next.items_.size(), categories = next.categories_.size();
  if (next.factors_.num_items() > items) r.Invalidate();
  next.popularity_.SetAnchor(r.F64());
  next.GrowItems();
  for (uint32_t i = 0; i < items && r.status().ok(); ++i) {
    ItemInfo& info = *next.info_.MutableRow(i);
    info.price = r.F32();
    const uint8_t flags = r.U8();
    info.in_stock = flags & 1;
    info.deleted = flags & 2;
    for (uint32_t& c : info.path) {
      const uint64_t v = r.Varint();
      if (v > categories) r.Invalidate();
      c = v == 0 ? ItemInfo::kNoCategory : static_cast<uint32_t>(v - 1);
    }
    next.popularity_.SetScore(i, r.F64());
    const uint64_t n = r.Varint();
    if (n > 0) {
      CoCounts co;
      for (uint64_t j = 0; j < n && r.status().ok(); ++j) {
        const uint64_t other = r.Varint();
        if (other >= items) r.Invalidate();
        co.push_back({static_cast<uint32_t>(other), static_cast<uint32_t>(r.Varint())});
      }
      next.co_purchase_.SetCounts(i, std::move(co));
    }
    next.co_purchase_.SetOrdersWith(i, static_cast<uint32_t>(r.Varint()));
  }
  next.popularity_.SetOverall(DecodeRanked(r, items));
  for (uint32_t c = 0; c < categories && r.status().ok(); ++c) {
    next.popularity_.SetCategory(c, DecodeRanked(r, items));
  }
  next.co_purchase_.SetOrders(r.Varint());
  const uint64_t open = r.Varint();
  for (uint64_t o = 0; o < open && r.status().ok(); ++o) {
    std::string id = r.Str();
    std::vector<uint32_t> order_items(std::min<uint64_t>(r.Varint(), r.remaining()));
    for (uint32_t& i : order_items) {
      i = static_cast<uint32_t>(r.Varint());
      if (i >= items) r.Invalidate();
    }
    next.co_purchase_.AddOpenOrder(std::move(id), std::move(order_items));
  }
  next.interactions_since_retrain_ = r.Varint();
  next.retrains_ = r.Varint();
  // Format 1 may end before the index, and may keep events that waited for a
  // retrain after it: the learner holds those now, so such a state is
  // rebuilt from the log.
  std::optional<IalsTuning> tuning;
  if (format >= 3) {
    next.index_.Decode(r, items);
    if (format >= 4 && r.U8() != 0) {
      tuning = IalsTuning::Decode(r, format >= 6, next.factors_.options());
    }
    if (format >= 5) {
      const uint64_t n = r.Varint();
      for (uint64_t i = 0; i < n && r.status().ok(); ++i) next.features_.FindOrAdd(r.Str());
      next.factors_.DecodeFeatures(r, items, next.features_.size());
    }
  } else if (!(format == 1 && r.done())) {
    r.Str();
  }
  if (format == 1 && !r.done() && (r.U8() != 0 || r.Varint() != 0)) {
    return absl::FailedPreconditionError(
        "recommend checkpoint: written while events waited for a retrain; rebuilt from the log");
  }
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("recommend checkpoint: trailing bytes");
  for (uint32_t i = 0; i < items && i < next.factors_.num_items(); ++i) next.SetSupport(i);

  users_ = std::move(next.users_);
  items_ = std::move(next.items_);
  categories_ = std::move(next.categories_);
  features_ = std::move(next.features_);
  factors_ = std::move(next.factors_);
  info_ = std::move(next.info_);
  support_ = std::move(next.support_);
  items_with_factors_ = next.items_with_factors_;
  popularity_ = std::move(next.popularity_);
  co_purchase_ = std::move(next.co_purchase_);
  interactions_since_retrain_ = next.interactions_since_retrain_;
  retrains_ = next.retrains_;
  retrain_.Reset();
  serving_.reset();
  factors_.TakeChangedItems();
  index_ = std::move(next.index_);
  tuning_.reset();
  // The flags' hyperparameters, or the search's where it chose them: a
  // state written under others is re-weighed.
  if (tuning) {
    UseTuning(std::make_shared<const IalsTuning>(*std::move(tuning)));
  } else {
    factors_.SetHyperparameters(options_.ials);
  }
  return absl::OkStatus();
}

}  // namespace mercato::core
