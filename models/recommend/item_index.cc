#include "models/recommend/item_index.h"

#include <algorithm>
#include <utility>

#include "core/log.h"

namespace mercato::core {

size_t StaleLimit(size_t indexed) { return std::clamp<size_t>(indexed / 32, 1, 2048); }

namespace {

ItemIndex::Built BuildIndex(int dim, const HnswOptions& options, size_t items,
                            const ItemIndex::RowOf& row_of, const std::atomic<bool>& stop,
                            const std::atomic<bool>& cancel) {
  auto index = std::make_shared<HnswIndex>(dim, options, items + items / 4);
  for (uint32_t i = 0; i < items; ++i) {
    if (stop.load(std::memory_order_relaxed) || cancel.load(std::memory_order_relaxed)) {
      return nullptr;
    }
    if (const float* row = row_of(i)) index->Upsert(i, row);
  }
  return index;
}

}  // namespace

ItemIndex::ItemIndex(int dim, HnswOptions options, size_t min_items)
    : dim_(dim), options_(options), min_items_(min_items) {}

bool ItemIndex::Wanted(size_t items_with_factors) const {
  return min_items_ > 0 && items_with_factors >= min_items_;
}

ItemIndex::Built ItemIndex::Build(size_t items, const RowOf& row_of,
                                  const std::atomic<bool>& stop) const {
  static const std::atomic<bool> kGo{false};
  return BuildIndex(dim_, options_, items, row_of, stop, kGo);
}

void ItemIndex::MarkStale(uint32_t item) {
  if (!index_ && !rebuild_.running()) return;  // a rebuild's start reads every row
  if (item >= changed_in_.size()) changed_in_.resize(item + 1, 0);
  if (changed_in_[item] < index_generation_) {
    stale_.push_back(item);
    stale_sorted_.reset();
  }
  changed_in_[item] = generation_;
}

void ItemIndex::Changed(const std::vector<uint32_t>& items) {
  for (uint32_t item : items) MarkStale(item);
}

void ItemIndex::Supersede() {
  if (!rebuild_.running()) return;
  rebuild_superseded_ = true;
  cancel_->store(true);
}

void ItemIndex::AdoptRetrained(Built index) {
  index_ = std::move(index);
  // Every row moved with the retrain; the index holds the trained ones.
  index_generation_ = ++generation_;
  stale_.clear();
  stale_sorted_.reset();
}

bool ItemIndex::RebuildDue(uint64_t position, size_t items_with_factors) const {
  if (rebuild_.running() || !Wanted(items_with_factors)) return false;
  if (!index_) return true;
  return stale_.size() >= StaleLimit(index_->size()) && position >= rebuilt_at_ + rebuild_span_;
}

void ItemIndex::StartRebuild(uint64_t position, RowBlockView<float> rows,
                             RowBlockView<uint32_t> support, uint64_t adopt_after,
                             bool background) {
  rebuild_generation_ = ++generation_;
  rebuild_superseded_ = false;
  cancel_ = std::make_shared<std::atomic<bool>>(false);
  rebuild_.Start(position, adopt_after, background,
                 [dim = dim_, options = options_, rows = std::move(rows),
                  support = std::move(support), cancel = cancel_](const std::atomic<bool>& stop) {
                   const auto row_of = [&](uint32_t i) {
                     return i < rows.rows() && *support.Row(i) > 0 ? rows.Row(i) : nullptr;
                   };
                   Built index = BuildIndex(dim, options, support.rows(), row_of, stop, *cancel);
                   return index ? std::optional<Built>(std::move(index)) : std::nullopt;
                 });
}

FitGate ItemIndex::Gate(uint64_t sequence) {
  if (!rebuild_.running()) return FitGate::kOpen;
  const uint64_t started = rebuild_.status()->started_sequence;
  // A superseded rebuild may have finished before its cancel reached it, or
  // not: either way it changes nothing but the counts, so that the state
  // does not depend on when its thread looked.
  const FitGate gate = rebuild_.Gate(sequence, [&](Built index) {
    if (rebuild_superseded_) return;
    index_ = std::move(index);
    index_generation_ = rebuild_generation_;
    std::erase_if(stale_, [&](uint32_t item) { return changed_in_[item] < index_generation_; });
    stale_sorted_.reset();
  });
  if (gate == FitGate::kAdopted) {
    rebuilt_at_ = sequence;
    rebuild_span_ = sequence - started;
    rebuild_superseded_ = false;
  }
  return gate;
}

ItemIndexView ItemIndex::Freeze() {
  if (!stale_sorted_) {
    auto sorted = std::make_shared<std::vector<uint32_t>>(stale_);
    std::sort(sorted->begin(), sorted->end());
    stale_sorted_ = std::move(sorted);
  }
  return {index_, stale_sorted_, rebuilt_at_, rebuild_span_};
}

void ItemIndexView::Encode(ByteWriter& w) const {
  w.Str(index ? index->Encode() : std::string());
  w.Varint(stale ? stale->size() : 0);
  if (stale) {
    for (uint32_t item : *stale) w.Varint(item);
  }
  w.Varint(rebuilt_at);
  w.Varint(rebuild_span);
}

void ItemIndex::Decode(ByteReader& r, size_t items) {
  const std::string bytes = r.Str();
  std::vector<uint32_t> stale(std::min<uint64_t>(r.Varint(), r.remaining()));
  for (uint32_t& item : stale) {
    const uint64_t v = r.Varint();
    if (v >= items) r.Invalidate();
    item = static_cast<uint32_t>(v);
  }
  const uint64_t rebuilt_at = r.Varint(), rebuild_span = r.Varint();
  if (!r.status().ok()) return;

  rebuild_ = {};
  index_.reset();
  generation_ = index_generation_ = 1;
  changed_in_.assign(items, 0);
  stale_.clear();
  stale_sorted_.reset();
  rebuilt_at_ = rebuilt_at;
  rebuild_span_ = rebuild_span;
  if (bytes.empty()) return;
  absl::StatusOr<std::unique_ptr<HnswIndex>> index =
      HnswIndex::Decode(dim_, options_, bytes, items);
  if (!index.ok()) {
    MERCATO_LOG(kWarning) << "recommend checkpoint: " << index.status() << "; rebuilding the index";
    return;
  }
  index_ = std::move(*index);
  for (uint32_t item : stale) MarkStale(item);
}

}  // namespace mercato::core
