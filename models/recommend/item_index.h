// The HNSW index over the item factors, through its life, every step at a
// log position, so that the index too is a function of the log:
//   - wanted once `min_items` items have factors;
//   - built over the item rows as of the log position it starts at: by each
//     retrain over its result, or by a rebuild of its own in the background
//     (core/background_fit.h), adopted where the log decides;
//   - never changed once built. The items whose rows moved since the rows
//     it was built over are stale: searches score them exactly beside the
//     index's candidates;
//   - rebuilt once the stale items reach a share of the index
//     (StaleLimit), but no sooner after the last rebuild's adoption than
//     that rebuild took, in log events, so that the model is settled (and
//     checkpointed) at least half of the time;
//   - saved with the checkpoint, with its stale items and rebuild counts.
//
// Owned by the learner thread and not thread-safe. A built index and a stale
// list, once handed out, never change and may be shared with any thread.
#ifndef MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_
#define MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/background_fit.h"
#include "core/bytes.h"
#include "core/row_block_matrix.h"
#include "models/recommend/hnsw_index.h"

namespace mercato::core {

// Stale items that make a rebuild due for an index of `indexed` items.
size_t StaleLimit(size_t indexed);

// What views serve and checkpoints save. Immutable.
struct ItemIndexView {
  // Null when there is none.
  std::shared_ptr<const HnswIndex> index;
  // The items whose rows moved since those the index holds, sorted.
  std::shared_ptr<const std::vector<uint32_t>> stale;
  // Log position of the last rebuild's adoption and how many events it took
  // from its start.
  uint64_t rebuilt_at = 0, rebuild_span = 0;
  // The layout ItemIndex::Decode reads.
  void Encode(ByteWriter& w) const;
};

class ItemIndex {
 public:
  // The row of an item to index, null when it has no factors.
  using RowOf = std::function<const float*(uint32_t item)>;
  using Built = std::shared_ptr<const HnswIndex>;

  // An index of `dim`-dimensional rows from `min_items` items with factors
  // on (0 = never).
  ItemIndex(int dim, HnswOptions options, size_t min_items);

  // Whether an index is wanted with `items_with_factors` items.
  bool Wanted(size_t items_with_factors) const;
  // An index over the rows of items 0..items-1; null when `stop` was set
  // meanwhile. Thread-safe (reads only its arguments and options).
  Built Build(size_t items, const RowOf& row_of, const std::atomic<bool>& stop) const;

  // The rows of `items` moved.
  void Changed(const std::vector<uint32_t>& items);
  // A retrain starts: a running rebuild stops early and adopts nothing at
  // its adoption point.
  void Supersede();
  // Serves `index`, built by a retrain whose result is adopted now.
  void AdoptRetrained(Built index);

  // Whether a rebuild is due at log position `position`.
  bool RebuildDue(uint64_t position, size_t items_with_factors) const;
  // Starts a rebuild at `position` over `rows` (item rows as of now) for the
  // items with `support` > 0; see BackgroundFit::Start.
  void StartRebuild(uint64_t position, RowBlockView<float> rows, RowBlockView<uint32_t> support,
                    uint64_t adopt_after, bool background);
  bool rebuilding() const { return rebuild_.running(); }
  const std::optional<RunningRetrain>& rebuild_status() const { return rebuild_.status(); }
  FitGate Gate(uint64_t sequence);
  std::optional<uint64_t> Finished() const { return rebuild_.Finished(); }
  void DoneAt(uint64_t started, uint64_t sequence) { rebuild_.DoneAt(started, sequence); }
  void Abandon() { rebuild_.Abandon(); }

  // O(1) while nothing became stale since the last call.
  ItemIndexView Freeze();
  // Replaces everything with what ItemIndexView::Encode wrote for `items`
  // items (errors stay in `r`, and then nothing changes); an index that
  // does not decode is dropped, to be rebuilt. Waits for a running rebuild
  // and drops it.
  void Decode(ByteReader& r, size_t items);

 private:
  void MarkStale(uint32_t item);

  int dim_;
  HnswOptions options_;
  size_t min_items_;
  Built index_;
  // Per item, the generation of its last change; an item is stale when that
  // is at least index_generation_.
  std::vector<uint32_t> changed_in_;
  uint32_t generation_ = 1, index_generation_ = 1, rebuild_generation_ = 0;
  // Stale items in the order they became stale, and a sorted copy for views.
  std::vector<uint32_t> stale_;
  std::shared_ptr<const std::vector<uint32_t>> stale_sorted_;
  uint64_t rebuilt_at_ = 0, rebuild_span_ = 0;
  // Set when a retrain started while the rebuild ran; `cancel_` stops the
  // rebuild's thread.
  bool rebuild_superseded_ = false;
  std::shared_ptr<std::atomic<bool>> cancel_;
  BackgroundFit<Built> rebuild_;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_ITEM_INDEX_H_
