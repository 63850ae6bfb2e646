#include "core/elasticity_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/bytes.h"
#include "core/table_codec.h"

namespace mercato::core {

// Series columns. Means and centred sums are forgetting-weighted (Welford
// form, which keeps its precision when prices are far from zero).
struct SeriesRow {
  enum : int {
    kOpenPeriod,   // index of the period being gathered; -1 before any sale
    kOpenUnits,
    kOpenRevenue,
    kWeight,       // sum of observation weights
    kMeanX,        // ln price
    kMeanY,        // ln units
    kCxx,
    kCxy,
    kCyy,
    kPeriods,      // observations, unweighted
    kMinPrice,
    kMaxPrice,
    kSegment,      // segment + 1; 0 = all customers
    kGroup,        // group row + 1 this series adds to; 0 = none
    kCategory,     // item rows: category index + 1; 0 = unknown
    kListPrice,    // item rows: from the catalogue
    kUnitCost,     // item rows: from the catalogue
    kCols
  };
};

// Group columns: sums of the contributions of its series.
struct GroupRow {
  enum : int {
    kWeight,
    kCxx,
    kCxy,
    kCyy,
    kSeries,       // series with at least one observation
    kSumMeanX,
    kSumMeanY,
    kPeriods,
    kEstimates,    // series with an estimate of their own
    kSumB,
    kSumB2,
    kSumVar,       // sum of their squared standard errors
    kMinPrice,
    kMaxPrice,
    // The shop row of a segment level (key: the segment suffix alone) sums
    // over its categories the spread of item estimates around their
    // category's mean, and its degrees of freedom.
    kWithinSs,
    kWithinDof,
    kCols
  };
};

namespace {

constexpr uint8_t kFormatVersion = 1;
constexpr char kSegmentSeparator = '\x1f';

std::string SegmentSuffix(std::optional<uint32_t> segment) {
  return segment ? absl::StrCat(std::string(1, kSegmentSeparator), "S", *segment) : "";
}

// The two-sided 95% quantile of Student's t (Cornish-Fisher expansion;
// within 0.3% of the exact value from 3 degrees of freedom on).
constexpr double kZ95 = 1.959963984540054;

double T95(double dof) {
  constexpr double z = kZ95;
  if (dof <= 1) return 12.706;
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * dof) + (5 * z5 + 16 * z3 + 3 * z) / (96 * dof * dof) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * dof * dof * dof);
}

// A fitted slope; `ok` false when there is none.
// Sets the estimate and its interval, `quantile` standard errors each side.
void SetEstimate(ElasticityEstimate& out, ElasticityLevel level, double e, double se,
                 double quantile) {
  out.level = level;
  out.elasticity = e;
  out.standard_error = se;
  out.ci_low = e - quantile * se;
  out.ci_high = e + quantile * se;
}

struct Fit {
  bool ok = false;
  double slope = 0, se = 0, dof = 0;
  explicit operator bool() const { return ok; }
};

// The slope of centred sums, when the prices varied enough to identify it.
Fit FitSlope(double weight, double cxx, double cxy, double cyy, double dof,
                            const ElasticityOptions& o) {
  if (dof < 1 || weight <= 0 || cxx / weight < o.min_log_price_sd * o.min_log_price_sd) {
    return {};
  }
  Fit f;
  f.ok = true;
  f.slope = cxy / cxx;
  const double rss = std::max(0.0, cyy - f.slope * cxy);
  f.dof = dof;
  f.se = std::sqrt(rss / dof / cxx);
  return f;
}

Fit SeriesFit(const double* s, const ElasticityOptions& o) {
  using C = SeriesRow;
  if (s[C::kPeriods] < o.min_periods) return {};
  return FitSlope(s[C::kWeight], s[C::kCxx], s[C::kCxy], s[C::kCyy], s[C::kWeight] - 2, o);
}

Fit GroupFit(const double* g, const ElasticityOptions& o) {
  using C = GroupRow;
  if (g[C::kPeriods] < o.min_periods) return {};
  // One intercept per series plus the common slope.
  return FitSlope(g[C::kWeight], g[C::kCxx], g[C::kCxy], g[C::kCyy],
                  g[C::kWeight] - g[C::kSeries] - 1, o);
}

// Why a series has no estimate of its own, in words.
std::string WhyNoFit(const double* s, const ElasticityOptions& o) {
  using C = SeriesRow;
  if (s == nullptr || s[C::kPeriods] == 0) return "no completed sales period yet";
  if (s[C::kPeriods] < o.min_periods) {
    return absl::StrCat("only ", s[C::kPeriods], " sales periods, fewer than the ", o.min_periods,
                        " needed");
  }
  return absl::StrFormat(
      "the price barely varied (%.2f to %.2f; ln-price sd %.4f < %.2f), so demand's response to "
      "it cannot be told apart from noise",
      s[C::kMinPrice], s[C::kMaxPrice], std::sqrt(s[C::kCxx] / s[C::kWeight]),
      o.min_log_price_sd);
}

}  // namespace

ElasticityModel::ElasticityModel(ElasticityOptions options, const SegmentLookup* segments)
    : options_(options),
      segments_(segments),
      series_(SeriesRow::kCols),
      groups_(GroupRow::kCols) {}

bool ElasticityModel::Apply(const Event& event) {
  if (event.type == EventType::kItemUpdate) {
    ApplyItemUpdate(event);
    return true;
  }
  if (event.type != EventType::kPurchase || event.quantity <= 0 || event.unit_price <= 0) {
    return false;
  }
  ApplyPurchase(event, SeriesFor(event.item_id, std::nullopt));
  if (segments_ != nullptr) {
    if (std::optional<uint32_t> segment = segments_->SegmentOf(event.user_id)) {
      segment_count_ = std::max(segment_count_, *segment + 1);
      ApplyPurchase(event, SeriesFor(event.item_id, segment));
    }
  }
  return true;
}

uint32_t ElasticityModel::SeriesFor(std::string_view item_id, std::optional<uint32_t> segment) {
  using C = SeriesRow;
  // A segment's series hangs off the item's own one.
  const uint32_t item_row = segment ? SeriesFor(item_id, std::nullopt) : 0;
  const size_t before = series_keys_.size();
  const uint32_t row = series_keys_.FindOrAdd(std::string(item_id) + SegmentSuffix(segment));
  if (series_keys_.size() == before) return row;
  series_.Resize(series_keys_.size());
  // An item's own series has no category yet: that comes with its catalogue
  // update, which then moves it into a group.
  const std::optional<uint32_t> group = segment ? GroupOf(item_row, segment) : std::nullopt;
  double* s = series_.MutableRow(row);
  s[C::kOpenPeriod] = -1;
  s[C::kSegment] = segment ? *segment + 1 : 0;
  s[C::kGroup] = group ? *group + 1 : 0;
  return row;
}

void ElasticityModel::ApplyItemUpdate(const Event& event) {
  using C = SeriesRow;
  const uint32_t row = SeriesFor(event.item_id, std::nullopt);
  double* s = series_.MutableRow(row);
  s[C::kListPrice] = event.unit_price;
  s[C::kUnitCost] = event.value;
  if (event.category.empty()) return;
  const double category = categories_.FindOrAdd(event.category) + 1;
  if (s[C::kCategory] == category) return;
  s[C::kCategory] = category;
  // Move the item's series, and its per-segment ones, to the new category.
  for (uint32_t seg = 0; seg <= segment_count_; ++seg) {
    const std::optional<uint32_t> segment =
        seg == 0 ? std::nullopt : std::optional<uint32_t>(seg - 1);
    const std::optional<uint32_t> r =
        series_keys_.Find(absl::StrCat(event.item_id, SegmentSuffix(segment)));
    if (!r) continue;
    Contribute(*r, -1);
    const std::optional<uint32_t> group = GroupOf(row, segment);
    series_.MutableRow(*r)[C::kGroup] = group ? *group + 1 : 0;
    Contribute(*r, +1);
  }
}

std::optional<uint32_t> ElasticityModel::GroupOf(uint32_t item_row,
                                                 std::optional<uint32_t> segment) {
  const double category = series_.Row(item_row)[SeriesRow::kCategory];
  if (category == 0) return std::nullopt;
  const uint32_t g = group_keys_.FindOrAdd(absl::StrCat(
      categories_.Name(static_cast<uint32_t>(category) - 1), SegmentSuffix(segment)));
  groups_.Resize(group_keys_.size());
  return g;
}

void ElasticityModel::ApplyPurchase(const Event& event, uint32_t row) {
  using C = SeriesRow;
  const double period = std::floor(static_cast<double>(event.timestamp_ms) /
                                    static_cast<double>(options_.period_ms));
  double* s = series_.MutableRow(row);
  if (s[C::kOpenPeriod] >= 0 && period > s[C::kOpenPeriod]) {
    // The open period is over: it becomes an observation.
    Contribute(row, -1);
    const double price = s[C::kOpenRevenue] / s[C::kOpenUnits];
    // ln(q + 1/2) rather than ln q: for counts, E[ln q] falls short of ln E[q]
    // by about 1/(2 E[q]), more at dearer prices, which would bias the slope.
    const double x = std::log(price), y = std::log(s[C::kOpenUnits] + 0.5);
    const double weight = s[C::kWeight] * options_.forgetting + 1;
    const double dx = x - s[C::kMeanX], dy = y - s[C::kMeanY];
    s[C::kMeanX] += dx / weight;
    s[C::kMeanY] += dy / weight;
    s[C::kCxx] = s[C::kCxx] * options_.forgetting + dx * (x - s[C::kMeanX]);
    s[C::kCxy] = s[C::kCxy] * options_.forgetting + dx * (y - s[C::kMeanY]);
    s[C::kCyy] = s[C::kCyy] * options_.forgetting + dy * (y - s[C::kMeanY]);
    s[C::kWeight] = weight;
    s[C::kMinPrice] = s[C::kPeriods] == 0 ? price : std::min(s[C::kMinPrice], price);
    s[C::kMaxPrice] = std::max(s[C::kMaxPrice], price);
    s[C::kPeriods] += 1;
    s[C::kOpenUnits] = s[C::kOpenRevenue] = 0;
    Contribute(row, +1);
  }
  // A late event (from an earlier period) counts in the open one.
  if (period > s[C::kOpenPeriod]) s[C::kOpenPeriod] = period;
  s[C::kOpenUnits] += event.quantity;
  s[C::kOpenRevenue] += event.quantity * event.unit_price;
}

void ElasticityModel::Contribute(uint32_t series_row, int sign) {
  using S = SeriesRow;
  using G = GroupRow;
  const double* s = series_.Row(series_row);
  if (s[S::kGroup] == 0 || s[S::kPeriods] == 0) return;
  const uint32_t group = static_cast<uint32_t>(s[S::kGroup]) - 1;
  const std::optional<uint32_t> segment =
      s[S::kSegment] == 0 ? std::nullopt
                          : std::optional<uint32_t>(static_cast<uint32_t>(s[S::kSegment]) - 1);
  const uint32_t shop_row = group_keys_.FindOrAdd(SegmentSuffix(segment));
  groups_.Resize(group_keys_.size());
  double* shop = groups_.MutableRow(shop_row);
  double* g = groups_.MutableRow(group);
  auto within = [](const double* g) {
    const double m = g[G::kEstimates];
    return m < 2 ? 0.0 : g[G::kSumB2] - g[G::kSumB] * g[G::kSumB] / m;
  };
  shop[G::kWithinSs] -= within(g);
  shop[G::kWithinDof] -= std::max(0.0, g[G::kEstimates] - 1);
  g[G::kWeight] += sign * s[S::kWeight];
  g[G::kCxx] += sign * s[S::kCxx];
  g[G::kCxy] += sign * s[S::kCxy];
  g[G::kCyy] += sign * s[S::kCyy];
  g[G::kSeries] += sign;
  g[G::kSumMeanX] += sign * s[S::kMeanX];
  g[G::kSumMeanY] += sign * s[S::kMeanY];
  g[G::kPeriods] += sign * s[S::kPeriods];
  if (const Fit f = SeriesFit(s, options_)) {
    for (double* r : {g, shop}) {
      r[G::kEstimates] += sign;
      r[G::kSumB] += sign * f.slope;
      r[G::kSumB2] += sign * f.slope * f.slope;
      r[G::kSumVar] += sign * f.se * f.se;
    }
  }
  shop[G::kWithinSs] += within(g);
  shop[G::kWithinDof] += std::max(0.0, g[G::kEstimates] - 1);
  if (sign > 0) {
    g[G::kMinPrice] = g[G::kMinPrice] == 0 ? s[S::kMinPrice]
                                           : std::min(g[G::kMinPrice], s[S::kMinPrice]);
    g[G::kMaxPrice] = std::max(g[G::kMaxPrice], s[S::kMaxPrice]);
  }
}

std::shared_ptr<const ModelView> ElasticityModel::Publish() {
  auto view = std::make_shared<ElasticityView>();
  view->options_ = options_;
  view->series_keys_ = series_keys_.Freeze();
  view->group_keys_ = group_keys_.Freeze();
  view->categories_ = categories_.Freeze();
  view->series_ = series_.Freeze();
  view->groups_ = groups_.Freeze();
  return view;
}

std::string ElasticityView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormatVersion);
  w.Varint(SeriesRow::kCols);
  w.Varint(GroupRow::kCols);
  EncodeTable(w, categories_, nullptr);
  EncodeTable(w, group_keys_, &groups_);
  EncodeTable(w, series_keys_, &series_);
  return out;
}

absl::Status ElasticityModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  if (r.U8() != kFormatVersion) {
    return absl::DataLossError("elasticity: unknown checkpoint format version");
  }
  if (r.Varint() != SeriesRow::kCols || r.Varint() != GroupRow::kCols) {
    return absl::DataLossError("elasticity: checkpoint has another row layout");
  }
  ElasticityModel fresh(options_, segments_);
  DecodeTable(r, fresh.categories_, nullptr);
  DecodeTable(r, fresh.group_keys_, &fresh.groups_);
  DecodeTable(r, fresh.series_keys_, &fresh.series_);
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("elasticity: trailing bytes in checkpoint");
  for (size_t i = 0; i < fresh.series_.rows(); ++i) {
    fresh.segment_count_ = std::max(
        fresh.segment_count_, static_cast<uint32_t>(fresh.series_.Row(i)[SeriesRow::kSegment]));
  }
  *this = std::move(fresh);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, uint64_t>> ElasticityView::Counts() const {
  return {{"series", series_keys_.size()},
          {"groups", group_keys_.size()},
          {"categories", categories_.size()}};
}

absl::StatusOr<ElasticityEstimate> ElasticityView::Estimate(const ElasticityQuery& q) const {
  using S = SeriesRow;
  using G = GroupRow;
  const ElasticityOptions& o = options_;
  const std::string suffix = SegmentSuffix(q.segment);
  ElasticityEstimate out;
  const double* item = nullptr;    // the item's own series row (catalogue facts)
  const double* series = nullptr;  // the series answered for (maybe per segment)
  std::string group_key;
  if (!q.item_id.empty()) {
    const std::optional<uint32_t> row = series_keys_.Find(q.item_id);
    if (!row) return absl::NotFoundError(absl::StrCat("item_id: no purchase or catalogue entry for '", q.item_id, "'"));
    item = series_.Row(*row);
    if (std::optional<uint32_t> r = series_keys_.Find(q.item_id + suffix)) series = series_.Row(*r);
    if (item[S::kCategory] > 0) {
      group_key = absl::StrCat(categories_.Name(static_cast<uint32_t>(item[S::kCategory]) - 1), suffix);
    }
  } else {
    if (!categories_.Find(q.category)) {
      return absl::NotFoundError(absl::StrCat("category: no catalogue item in '", q.category, "'"));
    }
    group_key = q.category + suffix;
  }
  const double* group = nullptr;
  if (std::optional<uint32_t> g = group_keys_.Find(group_key); g && !group_key.empty()) {
    group = groups_.Row(*g);
  }
  if (q.segment && series == nullptr && group == nullptr) {
    return absl::NotFoundError(absl::StrCat("segment: no purchases from segment ", *q.segment,
                                            q.item_id.empty() ? " in this category" : " of this item"));
  }
  const Fit own = series ? SeriesFit(series, o) : Fit();
  const Fit pooled = group ? GroupFit(group, o) : Fit();

  // Anchor of demand: mean ln price and ln units of the series (or of the
  // group's typical series).
  std::optional<std::pair<double, double>> anchor;
  if (series != nullptr && series[S::kPeriods] > 0) {
    anchor = {series[S::kMeanX], series[S::kMeanY]};
    out.observations = static_cast<uint64_t>(series[S::kPeriods]);
    out.min_price_seen = series[S::kMinPrice];
    out.max_price_seen = series[S::kMaxPrice];
  } else if (q.item_id.empty() && group != nullptr && group[G::kSeries] > 0) {
    anchor = {group[G::kSumMeanX] / group[G::kSeries], group[G::kSumMeanY] / group[G::kSeries]};
    out.observations = static_cast<uint64_t>(group[G::kPeriods]);
    out.min_price_seen = group[G::kMinPrice];
    out.max_price_seen = group[G::kMaxPrice];
  }

  if (own) {
    SetEstimate(out, ElasticityLevel::kItem, own.slope, own.se, T95(own.dof));
    const double m = group ? group[G::kEstimates] : 0;
    if (m >= 3) {
      // Empirical Bayes: the between-item variance is what the spread of
      // the item estimates has beyond their own sampling noise.
      const double mean_b = group[G::kSumB] / m;
      const double spread = (group[G::kSumB2] - m * mean_b * mean_b) / (m - 1);
      // A category's own value rests on a handful of items and can come out
      // far too small; the shop-wide one (the same spread pooled over every
      // category) is its floor, so that shrinkage never claims more than
      // the shop's categories show.
      double tau2 = std::max(o.min_between_variance, spread - group[G::kSumVar] / m);
      if (const std::optional<uint32_t> shop_row = group_keys_.Find(suffix)) {
        const double* shop = groups_.Row(*shop_row);
        if (shop[G::kWithinDof] > 0) {
          tau2 = std::max(tau2, shop[G::kWithinSs] / shop[G::kWithinDof] -
                                    shop[G::kSumVar] / shop[G::kEstimates]);
        }
      }
      const double prior = pooled ? pooled.slope : mean_b;
      const double precision = 1 / (own.se * own.se) + 1 / tau2;
      out.item_elasticity = own.slope;
      out.item_standard_error = own.se;
      SetEstimate(out, ElasticityLevel::kShrunk,
                  (own.slope / (own.se * own.se) + prior / tau2) / precision,
                  std::sqrt(1 / precision), kZ95);
    }
  } else if (pooled) {
    SetEstimate(out, ElasticityLevel::kCategory, pooled.slope, pooled.se, T95(pooled.dof));
    if (!q.item_id.empty()) {
      out.note = absl::StrCat("the item's own estimate is missing (", WhyNoFit(series, o),
                              "); this is its category's");
    }
    if (out.observations == 0 && group != nullptr) {
      out.observations = static_cast<uint64_t>(group[G::kPeriods]);
      out.min_price_seen = group[G::kMinPrice];
      out.max_price_seen = group[G::kMaxPrice];
    }
  } else {
    out.note = q.item_id.empty()
                   ? "no estimate: the category's items have too few sales periods or too "
                     "little price variation"
                   : absl::StrCat("no estimate: ", WhyNoFit(series, o),
                                  group_key.empty() ? ", and the item has no category"
                                                    : ", and its category has no estimate either");
    return out;
  }

  const double cost = q.unit_cost > 0 ? q.unit_cost : (item ? item[S::kUnitCost] : 0);
  const double low = out.min_price_seen / o.extrapolation_factor;
  const double high = out.max_price_seen * o.extrapolation_factor;
  auto outside = [&](double p) { return out.observations == 0 || p < low || p > high; };
  std::vector<std::string> notes;
  if (!out.note.empty()) notes.push_back(out.note);
  if (out.ci_high >= -1) {
    notes.push_back(absl::StrFormat(
        "no profit-maximising price: the 95%% interval [%.2f, %.2f] is not wholly below -1, so "
        "demand may be inelastic and profit would rise with price beyond the data",
        out.ci_low, out.ci_high));
  } else if (cost <= 0) {
    notes.push_back("no profit-maximising price: no unit cost in the request or the catalogue");
  } else {
    const double p = cost * out.elasticity / (1 + out.elasticity);
    if (outside(p)) {
      notes.push_back(absl::StrFormat(
          "the profit-maximising price %.2f lies far outside the prices seen (%.2f to %.2f); "
          "not extrapolating",
          p, out.min_price_seen, out.max_price_seen));
    } else {
      out.optimal_price = p;
    }
  }
  if (anchor) {
    const double intercept = anchor->second - out.elasticity * anchor->first;
    bool any_outside = false;
    for (double p : q.candidate_prices) {
      PricePointEstimate pp;
      pp.price = p;
      pp.expected_demand =
          std::max(0.0, std::exp(intercept + out.elasticity * std::log(p)) - 0.5);  // y = ln(q + 1/2)
      pp.expected_profit = cost > 0 ? (p - cost) * pp.expected_demand : 0;
      pp.extrapolated = outside(p);
      any_outside |= pp.extrapolated;
      out.candidates.push_back(pp);
    }
    if (any_outside) {
      notes.push_back(absl::StrFormat(
          "candidates marked extrapolated lie beyond [%.2f, %.2f]; their demand is a guess", low,
          high));
    }
  } else if (!q.candidate_prices.empty()) {
    notes.push_back("no demand at candidate prices: the item has no completed sales period");
  }
  out.note = absl::StrJoin(notes, "; ");
  return out;
}

}  // namespace mercato::core
