// Recommendations: personal (iALS, ials.h), session (context items folded
// into a temporary user row), time-decayed popularity per category and
// overall (popularity.h), similar items (cosine over item factors) and
// bought-together association rules (co_purchase.h), all kept current per
// event. The parts:
//   - recommend_model.cc: the learner step (Apply) and publication;
//   - recommend_view.cc: serving (retrieval, filters, fallbacks,
//     explanations);
//   - recommend_codec.cc: the checkpoint format;
//   - retrain_run.h: full retrains in the background, adopted at log
//     positions;
//   - item_index.h: the HNSW index through its life.
//
// Retrieval is an exact scan over the item factor blocks with a bounded heap
// (the reference), or, above `hnsw_min_items` items with factors, HNSW
// candidates re-scored exactly with the snapshot's own rows. Filters are
// checked per candidate.
//
// Threads: RecommendModel belongs to the learner thread (core/model.h);
// RecommendView is immutable and thread-safe, and owns what it shows
// (shared, copy-on-write, with the model and other views).
#ifndef MERCATO_MODELS_RECOMMEND_RECOMMEND_MODEL_H_
#define MERCATO_MODELS_RECOMMEND_RECOMMEND_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"
#include "models/recommend/co_purchase.h"
#include "models/recommend/hnsw_index.h"
#include "models/recommend/ials.h"
#include "models/recommend/ials_tuning.h"
#include "models/recommend/item_index.h"
#include "models/recommend/item_info.h"
#include "models/recommend/popularity.h"
#include "models/recommend/retrain_run.h"

namespace mercato::core {

inline constexpr char kRecommendModelName[] = "recommend";

struct RecommendOptions {
  IalsOptions ials;
  // The hyperparameter search a retrain runs first: at the first retrain,
  // and again once the interactions have doubled since the last search.
  IalsTuningOptions tuning;
  // Popularity halves over this long.
  double popularity_half_life_days = 7;
  // A background retrain starts after this many interactions since the last
  // one (0 = only on request).
  uint64_t retrain_every = 0;
  // Run retrains on a background thread (false: inline, for tests).
  bool background = true;
  // A retrain's result is adopted at its FIT_DONE record, or this many log
  // events after it started if that comes first (core/background_fit.h).
  uint64_t adopt_after_events = 20000;
  // The same for a rebuild of the HNSW index (item_index.h), which takes
  // longer than the events a server applies meanwhile.
  uint64_t index_adopt_after_events = 1000000;
  // Bought together: fewest shared orders for a pair to be reported.
  uint32_t min_support = 2;
  // HNSW from this many items with factors on (0 = exact scan only), built
  // by each retrain and rebuilt as fold-in moves rows (item_index.h).
  size_t hnsw_min_items = 50000;
  HnswOptions hnsw;
  // Explanations per explained result.
  int explanations = 3;
  // Item-side features from the catalogue (ials.h): the category path and
  // attributes of items.
  bool item_features = true;
};

enum class RecommendSource { kPersonal = 1, kSession = 2, kCategoryPopular = 3, kPopular = 4,
                             kSimilar = 5 };

struct ItemFilter {
  std::vector<std::string> categories;
  double min_price = 0, max_price = 0;
  bool in_stock_only = false;
  std::vector<std::string> exclude_item_ids;
  bool exclude_purchased = false, exclude_seen = false;
};

struct RecommendQuery {
  std::string user_id;
  std::vector<std::string> context_item_ids;
  size_t count = 10;
  ItemFilter filter;
  std::vector<std::string> candidate_item_ids;
  bool explain = false;
  // Force the exact scan (the reference path).
  bool exact = false;
  // Popularity only, no personal or session scores (an experiment arm's
  // policy).
  bool popular_only = false;
};

struct Recommendation {
  std::string item_id;
  double score = 0;
  RecommendSource source = RecommendSource::kPopular;
  // History item and its share of the score.
  std::vector<std::pair<std::string, double>> because;
  // The catalogue feature ("brand=north", "category=Kitchen") whose row
  // alone gives the largest share of the score, when that share is half or
  // more; empty otherwise.
  std::string attribute;
  double attribute_share = 0;
};

struct ItemAssociation {
  std::string item_id;
  uint64_t support = 0;
  double confidence = 0, lift = 0;
};

class RecommendView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  // The unobserved weight and regularisation in use, and the holdout
  // metrics of the search that chose them (when one did).
  std::vector<std::pair<std::string, double>> Gauges() const override;
  std::vector<FitTrial> Trials() const override;

  // Personal (or session) items, then the popular ones of the requested or
  // most visited category, then overall. INVALID_ARGUMENT for a filter
  // category the catalogue does not know ("filter.categories[i]: ...").
  absl::StatusOr<std::vector<Recommendation>> Recommend(const RecommendQuery& query) const;
  // Cosine neighbours of `item_id` over the item factors (none while it has
  // no factors). NOT_FOUND for an unknown or deleted item; INVALID_ARGUMENT
  // for an unknown filter category.
  absl::StatusOr<std::vector<Recommendation>> SimilarItems(std::string_view item_id, size_t count,
                                                           const ItemFilter& filter) const;
  // Highest lift first; `min_support` 0 = the model's default; deleted items
  // are never listed. NOT_FOUND for an unknown or deleted item.
  absl::StatusOr<std::vector<ItemAssociation>> BoughtTogether(std::string_view item_id,
                                                              size_t count,
                                                              uint32_t min_support) const;

  // For tests and benchmarks: the factor rows (null when unknown), and the
  // top `k` item rows for `query` by the exact scan or by HNSW (empty when
  // there is no index) searching `breadth` nodes (0 = the options').
  const float* UserFactors(std::string_view user_id) const;
  const float* ItemFactors(std::string_view item_id) const;
  std::vector<uint32_t> TopItems(const float* query, size_t k, bool exact, int breadth = 0) const;
  int dim() const { return options_.ials.dim; }
  size_t num_items() const { return items_.size(); }
  bool has_index() const { return index_.index != nullptr; }
  // Training and index build of the last retrain adopted.
  std::optional<RetrainInfo> LastRetrain() const override { return last_retrain_; }
  std::optional<RunningRetrain> Running() const override { return running_; }
  // The HNSW index (null when none) and the items it holds stale rows of.
  const ItemIndexView& index() const { return index_; }

 private:
  friend class RecommendModel;
  class Filter;
  struct Scored {
    double score;
    uint32_t item;
  };
  // Best `count` items for `query` passing `filter`; `candidates` (if any)
  // are the only items considered; else HNSW searches `breadth` nodes
  // (0 = the options') unless `exact`.
  std::vector<Scored> Rank(const Eigen::VectorXf& query, size_t count, const Filter& filter,
                           const std::vector<uint32_t>* candidates, bool exact,
                           int breadth = 0) const;
  // The best of `ranked` passing `filter`; with `scan_all`, a list cut short
  // at its length limit is completed by a scan of every item.
  std::vector<Scored> Popular(const RankedItems& ranked, size_t count, const Filter& filter,
                              bool scan_all) const;
  // The factor rows and decayed confidences of `history`'s items with
  // factors, and (when `items` is set) those items in the same order.
  void Observed(const History& history, Eigen::MatrixXd& x, Eigen::VectorXd& c,
                std::vector<uint32_t>* items) const;
  Eigen::VectorXf FoldIn(const History& history) const;
  // Fills out[r].because for ranked[r], from `history`, and out[r].attribute
  // from the score `query` gives the item's features.
  void Explain(const History& history, const Eigen::VectorXf& query,
               const std::vector<Scored>& ranked, std::vector<Recommendation>& out) const;
  absl::StatusOr<std::vector<uint32_t>> CategoriesOf(const ItemFilter& filter) const;

  RecommendOptions options_;
  IdDictionaryView users_, items_, categories_, features_;
  IalsFrozen factors_;
  RowBlockView<ItemInfo> info_;
  // Per item: 1 when it has factors (IalsState::HasRow), else 0.
  RowBlockView<uint32_t> support_;
  PopularityView popularity_;
  CoPurchaseView co_purchase_;
  uint64_t interactions_since_retrain_ = 0, retrains_ = 0;
  std::optional<RetrainInfo> last_retrain_;
  std::optional<RunningRetrain> running_;
  ItemIndexView index_;
  std::shared_ptr<const IalsTuning> tuning_;
  // While the learner holds events back for a retrain, factors_ has them
  // previewed and these are the factors without them, which Encode writes.
  std::optional<IalsFrozen> unserved_factors_;
};

class RecommendModel final : public Model {
 public:
  explicit RecommendModel(RecommendOptions options = {});
  std::string_view name() const override { return kRecommendModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;
  FitGate Gate(uint64_t sequence) override;
  // Of a retrain or an index rebuild (item_index.h), whichever started first.
  std::optional<uint64_t> FinishedFit() const override;
  void FitDoneAt(uint64_t started, uint64_t sequence) override;
  bool Preview(const Event& event) override;
  bool CanRetrain() const override { return true; }
  void Retrain() override;
  void Abandon() override;
  // Retrains now on this thread (and waits for any running retrain first).
  void RetrainNow();

 private:
  // Grows the per-item rows to the dictionary's size.
  void GrowItems();
  // Whether Apply() has anything to do with `event`.
  bool Uses(const Event& event) const;
  void ApplyItemUpdate(const Event& event);
  // At a USER_DELETE: the customer's row, renamed (core::RenameErased).
  std::optional<uint32_t> EraseUser(const Event& event);
  // The row of `event`'s customer as of the event's position.
  uint32_t UserRow(const Event& event);
  void ApplyInteraction(const Event& event, uint32_t item);
  // support_[item] from the factors, and items_with_factors_ with it.
  void SetSupport(uint32_t item);
  void StartRetrain();
  // Serves a retrain's result (its tail replayed).
  void AdoptRetrain(TrainedFactors trained);
  // Trains with the hyperparameters `tuning` chose from here on, but the
  // pinned ones (options_ keeps the configured ones).
  void UseTuning(std::shared_ptr<const IalsTuning> tuning);

  RecommendOptions options_;
  // features_ names the catalogue features: "category=<path>", "<name>=<value>".
  IdDictionary users_, items_, categories_, features_;
  IalsState factors_;
  RowBlockMatrix<ItemInfo> info_;
  RowBlockMatrix<uint32_t> support_;
  size_t items_with_factors_ = 0;
  Popularity popularity_;
  CoPurchase co_purchase_;
  uint64_t interactions_since_retrain_ = 0, retrains_ = 0;
  std::optional<RetrainInfo> last_retrain_;
  // The sequence of the last event given to Apply().
  uint64_t position_ = 0;
  // While the learner holds this model's events back for a retrain's
  // adoption (Preview), factors_ with them folded in, so that
  // recommendations stay fresh; never encoded.
  std::optional<IalsState> serving_;
  // Erasures renamed (by Preview, which runs ahead) but not yet applied:
  // the customer renamed at `delete_sequence` and their row, which that
  // customer's events before it still reach. Empty when every event is
  // applied; never encoded.
  struct Erasing {
    std::string user_id;
    uint64_t delete_sequence;
    uint32_t row;
  };
  std::vector<Erasing> erasing_;
  ItemIndex index_;
  // The last search adopted; none before the first.
  std::shared_ptr<const IalsTuning> tuning_;
  // Last: destroyed first, waiting for a running retrain.
  RetrainRun retrain_;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_RECOMMEND_MODEL_H_
