// The HNSW index over the item factors, through its life: wanted once
// enough items have factors; built by each retrain over its result (Build,
// on the retrain's thread); kept current as fold-in moves item rows (Sync,
// at each publication, deferred while a checkpoint is saving the index);
// saved with the checkpoint and restored from it, or rebuilt on a thread
// of its own after a restore, serving by exact scan meanwhile (Poll adopts
// it once built).
//
// Owned by the learner thread and not thread-safe, except that views share
// the HnswIndex itself (hnsw_index.h says what it allows).
#ifndef MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_
#define MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/recommend/hnsw_index.h"
#include "models/recommend/ials.h"

namespace mercato::core {

class ItemIndex {
 public:
  // An index of `dim`-dimensional rows from `min_items` items with factors
  // on (0 = never).
  ItemIndex(int dim, HnswOptions options, size_t min_items);
  ~ItemIndex();

  // Whether an index is wanted with `items_with_factors` items.
  bool Wanted(size_t items_with_factors) const;
  // An index over the items of `state` with factors; null when `stop` was
  // set meanwhile. Thread-safe (reads only its arguments and options).
  std::shared_ptr<HnswIndex> Build(const IalsState& state, const std::atomic<bool>& stop) const;

  // The index now served; null when none.
  const std::shared_ptr<HnswIndex>& current() const { return index_; }
  // Serves `index` (a retrain's).
  void Adopt(std::shared_ptr<HnswIndex> index) { index_ = std::move(index); }
  // Brings the index up to date with the rows of `factors` that changed.
  void Sync(IalsState& factors);
  // After a restore of `factors`: serves the index decoded from `bytes`
  // (may be empty), or builds one in the background when it is wanted.
  void Restore(std::string_view bytes, const IalsState& factors, size_t items,
               size_t items_with_factors);
  // Adopts an index built after a restore once ready. True when it did.
  bool Poll();
  // Ends a background build early, for good.
  void Abandon() { abandoned_ = true; }
  // Serialized index, empty when none.
  std::string Encode() const { return index_ ? index_->Encode() : std::string(); }

 private:
  int dim_;
  HnswOptions options_;
  size_t min_items_;
  std::shared_ptr<HnswIndex> index_;
  // Items whose index vector is out of date, in the order they changed.
  std::vector<uint32_t> backlog_;
  // An index being built for restored factors.
  std::future<std::shared_ptr<HnswIndex>> pending_;
  // Set by Abandon(); read by the build thread.
  std::atomic<bool> abandoned_{false};
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_
