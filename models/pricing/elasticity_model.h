// Price elasticity of demand: per item, per category and per customer
// segment, learned from purchases in log order.
//
// Each series (an item, or an item within one customer segment) turns its
// purchases into one observation per period (a day by default): the average
// price paid and the units sold. A period closes when the series' next sale
// of a later period arrives or shop time (the latest time of a shopper's
// event the model has seen) passes its end, whichever comes first; a purchase from an
// earlier period than the open one counts in the open one. Demand is Poisson
// with ln E[q] = a + e ln p, fitted by maximum likelihood to the periods
// with sales (zero-truncated: periods without a sale are not observed, and
// a plain fit to the others would bias low-volume slopes toward zero). The
// fit is invariant to the unit of quantity for counts well above one. Its
// sufficient statistics are kept in bins of ln price, so closing a period
// costs O(bins) and an event O(1); forgetting discounts older periods.
//
// A group (a category, or a category within one segment) estimates the mean
// of its items' elasticities from their own estimates. Item estimates are
// shrunk toward it (empirical Bayes, between-item variance by DerSimonian
// and Laird's weighted moments), with a posterior variance in the manner of
// Morris (1983): it adds the
// uncertainty of the group mean and of the shrinkage weight, so a shrunk
// interval never claims more than the group can support. Every group sum is
// kept current by subtracting a series' old contribution and adding its new
// one, so a publication copies only changed blocks.
//
// Threads: ElasticityModel belongs to the learner thread (core/model.h) and
// reads the segment model it was given on that thread only. ElasticityView
// is immutable and thread-safe, and shares its row blocks with the model.
#ifndef MERCATO_MODELS_PRICING_ELASTICITY_MODEL_H_
#define MERCATO_MODELS_PRICING_ELASTICITY_MODEL_H_

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

namespace mercato::core {

inline constexpr char kElasticityModelName[] = "elasticity";

// Which segment a customer belongs to when an event is applied. Implemented
// by the segment model; called on the learner thread only.
class SegmentLookup {
 public:
  virtual ~SegmentLookup() = default;
  virtual std::optional<uint32_t> SegmentOf(std::string_view user_id) const = 0;
};

struct ElasticityOptions {
  // Length of one observation period.
  int64_t period_ms = 24LL * 3600 * 1000;
  // Weight kept by the older observations of a series at each new one
  // (1 = never forget; 0.99 halves an observation's weight in ~69 periods).
  double forgetting = 1.0;
  // Fewest periods for a series' own estimate.
  int min_periods = 8;
  // Smallest standard deviation of ln(price) that identifies a slope: below
  // it the prices barely moved and any estimate would be noise.
  double min_log_price_sd = 0.02;
  // Prices beyond [lowest seen / f, highest seen * f] are extrapolation.
  double extrapolation_factor = 1.5;
  // Floor of the between-item variance, so that a group whose items look
  // alike does not swallow every item's own evidence.
  double min_between_variance = 0.0025;
};

enum class ElasticityLevel { kNone = 0, kItem = 1, kShrunk = 2, kCategory = 3 };

struct ElasticityQuery {
  // Exactly one of item_id and category.
  std::string item_id;
  std::string category;
  // Optional segment id; nullopt = all customers.
  std::optional<uint32_t> segment;
  // Cost per unit; 0 = the catalogue's unit cost of the item, if any.
  double unit_cost = 0;
  std::vector<double> candidate_prices;
};

struct PricePointEstimate {
  double price = 0;
  double expected_demand = 0;
  double expected_profit = 0;
  bool extrapolated = false;
};

struct ElasticityEstimate {
  // kNone: no estimate; `note` says why.
  ElasticityLevel level = ElasticityLevel::kNone;
  double elasticity = 0;
  double standard_error = 0;
  double ci_low = 0, ci_high = 0;
  // kShrunk only: the item's own estimate and standard error before shrinkage.
  double item_elasticity = 0, item_standard_error = 0;
  // Closed periods with sales behind the estimate and the range of period
  // prices they saw. The period shop time is in is not among them until it
  // closes.
  uint64_t observations = 0;
  double min_price_seen = 0, max_price_seen = 0;
  std::optional<double> optimal_price;
  // Empty when demand cannot be predicted (no estimate, or no observation to
  // anchor the level of demand).
  std::vector<PricePointEstimate> candidates;
  std::string note;
};

// Per series: the open period, the forgetting sums, the price range, and for
// item rows the catalogue facts.
struct SeriesRow;
// Per group: the sums over its series.
struct GroupRow;

class ElasticityView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  // NOT_FOUND for an unknown item, category or segment.
  absl::StatusOr<ElasticityEstimate> Estimate(const ElasticityQuery& query) const;

 private:
  friend class ElasticityModel;
  ElasticityOptions options_;
  int64_t shop_period_ = -1;
  IdDictionaryView series_keys_, group_keys_, categories_;
  RowBlockView<double> series_, groups_;
};

class ElasticityModel final : public Model {
 public:
  // `segments` may be null (no per-segment estimates); not owned, must
  // outlive the model.
  explicit ElasticityModel(ElasticityOptions options = {}, const SegmentLookup* segments = nullptr);
  std::string_view name() const override { return kElasticityModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;

 private:
  void ApplyItemUpdate(const Event& event);
  void ApplyPurchase(const Event& event, uint32_t series_row);
  int64_t PeriodOf(int64_t timestamp_ms) const;
  // Moves the shop's period to that of `shop_time_ms` when later, closing
  // every open period before it (O(series) when a period ends); true when
  // the period moved.
  bool AdvanceShopTime(int64_t shop_time_ms);
  // Turns the series' open period into an observation and refits it.
  void ClosePeriod(uint32_t series_row);
  // The row of the item's series for `segment` (nullopt = all customers),
  // added when new.
  uint32_t SeriesFor(std::string_view item_id, std::optional<uint32_t> segment);
  // Moves a series' contribution out of (sign -1) or into (+1) its group.
  // Only the series row's block and the group's are touched.
  void Contribute(uint32_t series_row, int sign);
  // The group of the item's category within `segment`, added when new;
  // nullopt when the item has no category.
  std::optional<uint32_t> GroupOf(uint32_t item_row, std::optional<uint32_t> segment);

  ElasticityOptions options_;
  const SegmentLookup* segments_;
  IdDictionary series_keys_, group_keys_, categories_;
  RowBlockMatrix<double> series_, groups_;
  // Segment ids that have series, for moving them when a category changes.
  uint32_t segment_count_ = 0;
  // The period of the latest event time seen; -1 before any.
  int64_t shop_period_ = -1;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_PRICING_ELASTICITY_MODEL_H_
