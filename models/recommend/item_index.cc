#include "models/recommend/item_index.h"

#include <chrono>
#include <utility>

#include "core/learner.h"
#include "core/log.h"

namespace mercato::core {

ItemIndex::ItemIndex(int dim, HnswOptions options, size_t min_items)
    : dim_(dim), options_(options), min_items_(min_items) {}

ItemIndex::~ItemIndex() {
  if (pending_.valid()) pending_.wait();
}

bool ItemIndex::Wanted(size_t items_with_factors) const {
  return min_items_ > 0 && items_with_factors >= min_items_;
}

std::shared_ptr<HnswIndex> ItemIndex::Build(const IalsState& state,
                                            const std::atomic<bool>& stop) const {
  auto index =
      std::make_shared<HnswIndex>(dim_, options_, state.num_items() + state.num_items() / 4);
  for (uint32_t i = 0; i < state.num_items(); ++i) {
    if (stop.load(std::memory_order_relaxed)) return nullptr;
    if (state.ItemSupport(i) > 0) index->Upsert(i, state.item_row(i));
  }
  return index;
}

void ItemIndex::Sync(IalsState& factors) {
  const std::vector<uint32_t> changed = factors.TakeChangedItems();
  if (!index_) return;
  backlog_.insert(backlog_.end(), changed.begin(), changed.end());
  // Upserts would wait for the save; fold-in and publications must not.
  if (index_->saving()) return;
  for (uint32_t item : backlog_) {
    if (factors.ItemSupport(item) > 0) index_->Upsert(item, factors.item_row(item));
  }
  backlog_.clear();
}

void ItemIndex::Restore(std::string_view bytes, const IalsState& factors, size_t items,
                        size_t items_with_factors) {
  if (pending_.valid()) pending_.wait();
  index_.reset();
  backlog_.clear();
  if (!Wanted(items_with_factors)) return;
  if (!bytes.empty()) {
    absl::StatusOr<std::unique_ptr<HnswIndex>> index =
        HnswIndex::Decode(dim_, options_, bytes, items);
    if (index.ok()) {
      index_ = std::move(*index);
      return;
    }
    MERCATO_LOG(kWarning) << "recommend checkpoint: " << index.status() << "; rebuilding the index";
  }
  // Serve by exact scan until the index over the restored factors is built.
  pending_ = std::async(std::launch::async, [this, state = factors] {
    SetThreadNice(kRetrainNice);
    return Build(state, abandoned_);
  });
}

bool ItemIndex::Poll() {
  if (!pending_.valid() || pending_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return false;
  }
  index_ = pending_.get();
  return true;
}

}  // namespace mercato::core
