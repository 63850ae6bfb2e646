// Time-decayed popularity per item, overall and per category: each item's
// score is the sum of its interactions' weights, each halving over
// `half_life_days`. Scores are kept against an anchor time (score * 2^-(now
// - anchor) / half life is today's), rescaled when the exponent grows large,
// so that an event costs O(list length), not O(items). The lists keep the
// best kTopPopular items; Popular() in the view completes a list cut short
// by a scan over every score.
//
// Popularity is owned by the learner thread and not thread-safe;
// PopularityView is immutable and shares unchanged blocks and lists with
// the model and with other views.
#ifndef MERCATO_MODELS_RECOMMEND_POPULARITY_H_
#define MERCATO_MODELS_RECOMMEND_POPULARITY_H_

#include <cstdint>
#include <memory>

#include "core/row_block_matrix.h"
#include "models/recommend/item_info.h"
#include "models/recommend/ranked_items.h"

namespace mercato::core {

// Popularity lists keep this many items (the largest `count`).
inline constexpr size_t kTopPopular = 1000;

struct PopularityView {
  // Per item: anchored score.
  RowBlockView<double> scores;
  std::shared_ptr<const RankedItems> overall;
  // Per category id (null when the category has no popular item).
  RowBlockView<std::shared_ptr<const RankedItems>> by_category;
  double anchor_ms = 0;
  double half_life_days = 7;

  // The factor turning anchored scores into today's at `now_ms`.
  double Scale(int64_t now_ms) const;
};

class Popularity {
 public:
  explicit Popularity(double half_life_days);

  // Grows the rows to `items` items and `categories` categories.
  void Resize(size_t items, size_t categories);
  // `weight` (> 0) at `t_ms` for `item`, listed under each category of `path`.
  void Add(uint32_t item, double weight, int64_t t_ms, const ItemInfo& info);
  // `item` moves from the categories of `from` to those of `to`.
  void Move(uint32_t item, const ItemInfo& from, const ItemInfo& to);
  PopularityView Freeze() const;

  // For the checkpoint codec.
  double score(uint32_t item) const { return *scores_.Row(item); }
  void SetScore(uint32_t item, double score) { *scores_.MutableRow(item) = score; }
  const RankedItems* overall() const { return overall_.get(); }
  const RankedItems* category(uint32_t c) const { return by_category_.Row(c)->get(); }
  void SetOverall(RankedItems list);
  void SetCategory(uint32_t c, RankedItems list);
  double anchor_ms() const { return anchor_ms_; }
  void SetAnchor(double anchor_ms) { anchor_ms_ = anchor_ms; }

 private:
  double half_life_days_;
  RowBlockMatrix<double> scores_;
  std::shared_ptr<const RankedItems> overall_;
  RowBlockMatrix<std::shared_ptr<const RankedItems>> by_category_;
  double anchor_ms_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_POPULARITY_H_
