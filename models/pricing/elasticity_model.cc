#include "models/pricing/elasticity_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/bytes.h"
#include "core/table_codec.h"

namespace mercato::core {

// Series columns. A closed period is one observation (x = ln of its average
// price, q = its units); observations are kept as sufficient statistics in
// up to kNumBins bins of ln price, which is all the Poisson likelihood needs.
struct SeriesRow {
  enum : int {
    kOpenPeriod,  // index of the period being gathered; -1 when none
    kOpenUnits,
    kOpenRevenue,
    kPeriods,  // observations, unweighted
    kMinPrice,
    kMaxPrice,
    kSegment,    // segment + 1; 0 = all customers
    kGroup,      // group row + 1 this series adds to; 0 = none
    kCategory,   // item rows: category index + 1; 0 = unknown
    kListPrice,  // item rows: from the catalogue
    kUnitCost,   // item rows: from the catalogue
    // The fit after the last observation (kFitOk 0: none).
    kFitOk,
    kIntercept,  // a of ln λ = a + e x
    kSlope,      // e
    kSlopeSe,
    kDof,
    kMeanX,  // information-weighted mean ln price: where a slope pivots
    kSdX,    // weighted standard deviation of ln price
    // Bins: weighted periods, sum of x, units and squared units.
    kBins,
    kCols = kBins + 4 * 32
  };
};
constexpr int kNumBins = (SeriesRow::kCols - SeriesRow::kBins) / 4;
// Observations whose ln prices lie this close share a bin (0.5% in price).
constexpr double kBinWidth = 0.005;

// Group columns: sums over its series; the estimate sums over the series
// with an estimate of their own.
struct GroupRow {
  enum : int {
    kSeries,  // series with at least one observation
    kPeriods,
    kEstimates,  // series with an estimate of their own
    kSumB,
    kSumB2,
    kSumVar,    // sum of their squared standard errors
    kSumMeanX,  // sums of their pivot ln price and ln λ there
    kSumMeanY,
    kMinPrice,
    kMaxPrice,
    // Precision-weighted sums (w = 1 / se^2) for the between-item variance.
    kSumW,
    kSumWB,
    kSumWB2,
    kSumW2,
    // The shop row of a segment level (key: the segment suffix alone) sums
    // over its categories DerSimonian and Laird's Q, its degrees of freedom
    // and its scale (see BetweenVariance).
    kWithinQ,
    kWithinDof,
    kWithinScale,
    kCols
  };
};

namespace {

// 2: zero-truncated Poisson per series (binned), estimates from the item
// fits. Version 1 states (log-log least squares) cannot be converted: the
// model then starts empty and the log replays into it.
constexpr uint8_t kFormatVersion = 2;
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

// Sets the estimate and its interval, `quantile` standard errors each side.
void SetEstimate(ElasticityEstimate& out, ElasticityLevel level, double e, double se,
                 double quantile) {
  out.level = level;
  out.elasticity = e;
  out.standard_error = se;
  out.ci_low = e - quantile * se;
  out.ci_high = e + quantile * se;
}

// The zero-truncated Poisson at rate λ: the mean and variance of a period's
// units given that the period sold something.
struct Truncated {
  double mean, var;
};
Truncated TruncatedPoisson(double lambda) {
  const double sold = -std::expm1(-lambda);  // P(q > 0)
  const double mean = lambda < 1e-8 ? 1 + lambda / 2 : lambda / sold;
  return {mean, std::max(1e-300, mean * (1 + lambda - mean))};
}

// Fits ln λ = a + e x to the series' bins by maximum likelihood, Newton's
// method warm-started from the last fit. Periods without a sale are not
// observations, so the likelihood is the zero-truncated one: a plain
// Poisson fit to the periods with sales would pull low-volume items'
// slopes toward zero. The standard error is the inverse information's,
// scaled by the Pearson dispersion.
void FitSeries(double* s, const ElasticityOptions& o) {
  using C = SeriesRow;
  const bool warm = s[C::kFitOk] != 0;
  s[C::kFitOk] = 0;
  double w = 0, wx = 0, wxx = 0, q = 0;
  for (int b = 0; b < kNumBins; ++b) {
    const double* bin = s + C::kBins + 4 * b;
    w += bin[0];
    wx += bin[1];
    wxx += bin[0] > 0 ? bin[1] * bin[1] / bin[0] : 0;
    q += bin[2];
  }
  if (w <= 0) return;
  const double mean_x = wx / w;
  s[C::kSdX] = std::sqrt(std::max(0.0, wxx / w - mean_x * mean_x));
  if (s[C::kPeriods] < o.min_periods || s[C::kSdX] < o.min_log_price_sd) return;
  // Centred on the mean ln price, so the two parameters are near-orthogonal.
  double a = warm ? s[C::kIntercept] + s[C::kSlope] * mean_x : std::log(q / w);
  double e = warm ? s[C::kSlope] : 0;
  double i00 = 0, i01 = 0, i11 = 0, pearson = 0;
  for (int iter = 0; iter < 50; ++iter) {
    double g0 = 0, g1 = 0;
    i00 = i01 = i11 = pearson = 0;
    for (int b = 0; b < kNumBins; ++b) {
      const double* bin = s + C::kBins + 4 * b;
      if (bin[0] <= 0) continue;
      const double x = bin[1] / bin[0] - mean_x;
      const double lambda = std::exp(std::clamp(a + e * x, -30.0, 30.0));
      const Truncated t = TruncatedPoisson(lambda);
      const double r = bin[2] - bin[0] * t.mean;
      g0 += r;
      g1 += r * x;
      const double h = bin[0] * t.var;
      i00 += h;
      i01 += h * x;
      i11 += h * x * x;
      pearson += (bin[3] - 2 * t.mean * bin[2] + bin[0] * t.mean * t.mean) / t.var;
    }
    const double det = i00 * i11 - i01 * i01;
    if (!(det > 0)) return;
    const double da = (i11 * g0 - i01 * g1) / det, de = (i00 * g1 - i01 * g0) / det;
    a += std::clamp(da, -2.0, 2.0);
    e += std::clamp(de, -2.0, 2.0);
    if (std::abs(da) < 1e-10 && std::abs(de) < 1e-10) break;
  }
  const double det = i00 * i11 - i01 * i01;
  if (!(det > 0) || !std::isfinite(a) || !std::isfinite(e)) return;
  const double dof = s[C::kPeriods] - 2;
  // Quasi-Poisson: the Pearson statistic per degree of freedom scales the
  // variance (above 1 when days vary more than Poisson, as real ones do).
  const double dispersion = dof > 0 ? pearson / w * s[C::kPeriods] / dof : 1.0;
  s[C::kFitOk] = 1;
  s[C::kSlope] = e;
  s[C::kSlopeSe] = std::sqrt(dispersion * i00 / det);
  s[C::kDof] = dof;
  // Pivot at the information-weighted mean, where intercept and slope are
  // uncorrelated.
  const double pivot = mean_x + i01 / i00;
  s[C::kMeanX] = pivot;
  s[C::kIntercept] = a - e * mean_x;
}

struct Fit {
  bool ok = false;
  double slope = 0, se = 0, dof = 0;
  explicit operator bool() const { return ok; }
};

Fit SeriesFit(const double* s) {
  using C = SeriesRow;
  if (s == nullptr || s[C::kFitOk] == 0) return {};
  return {true, s[C::kSlope], s[C::kSlopeSe], s[C::kDof]};
}

// A group's estimate: the mean of its items' own estimates, with the
// standard error their spread gives (which holds both their noise and their
// true differences). A group of one estimate has no spread to go by: that
// estimate, with its own standard error and a normal quantile.
Fit GroupFit(const double* g) {
  using C = GroupRow;
  const double m = g[C::kEstimates];
  if (m < 1) return {};
  const double mean = g[C::kSumB] / m;
  if (m < 2) return {true, mean, std::sqrt(g[C::kSumVar]), 1e9};
  const double spread = std::max(0.0, (g[C::kSumB2] - m * mean * mean) / (m - 1));
  return {true, mean, std::sqrt(std::max(spread, g[C::kSumVar] / m) / m), m - 1};
}

// DerSimonian and Laird's moment statistics of a group's item estimates:
// Q = sum w (b - weighted mean)^2, whose expectation is (m - 1) +
// tau2 * (sum w - sum w^2 / sum w).
struct Heterogeneity {
  double q = 0, dof = 0, scale = 0;
};
Heterogeneity HeterogeneityOf(const double* g) {
  using C = GroupRow;
  if (g[C::kEstimates] < 2 || g[C::kSumW] <= 0) return {};
  return {g[C::kSumWB2] - g[C::kSumWB] * g[C::kSumWB] / g[C::kSumW], g[C::kEstimates] - 1,
          g[C::kSumW] - g[C::kSumW2] / g[C::kSumW]};
}

// The between-item variance from those statistics (0 when none).
double BetweenVariance(double q, double dof, double scale) {
  return scale > 0 ? std::max(0.0, (q - dof) / scale) : 0;
}

// Why a series has no estimate of its own, in words.
std::string WhyNoFit(const double* s, const ElasticityOptions& o) {
  using C = SeriesRow;
  if (s == nullptr || s[C::kPeriods] == 0) return "no completed sales period yet";
  if (s[C::kPeriods] < o.min_periods) {
    return absl::StrCat("only ", s[C::kPeriods], " sales periods, fewer than the ", o.min_periods,
                        " needed");
  }
  if (s[C::kSdX] < o.min_log_price_sd) {
    return absl::StrFormat(
        "the price barely varied (%.2f to %.2f; ln-price sd %.4f < %.2f), so demand's response "
        "to it cannot be told apart from noise",
        s[C::kMinPrice], s[C::kMaxPrice], s[C::kSdX], o.min_log_price_sd);
  }
  return "the demand model could not be fitted to its sales periods";
}

// Adds observation (x, q) to the series' bins: into the bin within
// kBinWidth, else a free one, else the two closest bins merge first.
void AddToBins(double* s, double x, double q) {
  using C = SeriesRow;
  double* bins = s + C::kBins;
  auto mean = [&](int b) { return bins[4 * b + 1] / bins[4 * b]; };
  int target = -1, free = -1;
  for (int b = 0; b < kNumBins && target < 0; ++b) {
    if (bins[4 * b] <= 0) {
      if (free < 0) free = b;
    } else if (std::abs(mean(b) - x) <= kBinWidth) {
      target = b;
    }
  }
  if (target < 0 && free < 0) {
    int i = 0, j = 1;
    for (int a = 0; a < kNumBins; ++a) {
      for (int b = a + 1; b < kNumBins; ++b) {
        if (std::abs(mean(a) - mean(b)) < std::abs(mean(i) - mean(j))) i = a, j = b;
      }
    }
    for (int k = 0; k < 4; ++k) {
      bins[4 * i + k] += bins[4 * j + k];
      bins[4 * j + k] = 0;
    }
    free = j;
  }
  double* bin = bins + 4 * (target >= 0 ? target : free);
  bin[0] += 1;
  bin[1] += x;
  bin[2] += q;
  bin[3] += q * q;
}

}  // namespace

ElasticityModel::ElasticityModel(ElasticityOptions options, const SegmentLookup* segments)
    : options_(options), segments_(segments), series_(SeriesRow::kCols), groups_(GroupRow::kCols) {}

bool ElasticityModel::Apply(const Event& event) {
  const bool closed = AdvanceShopTime(event.shop_time_ms);
  if (event.type == EventType::kItemUpdate) {
    ApplyItemUpdate(event);
    return true;
  }
  if (event.type != EventType::kPurchase || event.quantity <= 0 || event.unit_price <= 0) {
    return closed;
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
  const uint32_t g = group_keys_.FindOrAdd(
      absl::StrCat(categories_.Name(static_cast<uint32_t>(category) - 1), SegmentSuffix(segment)));
  groups_.Resize(group_keys_.size());
  return g;
}

int64_t ElasticityModel::PeriodOf(int64_t timestamp_ms) const {
  return timestamp_ms >= 0 ? timestamp_ms / options_.period_ms
                           : -((-timestamp_ms + options_.period_ms - 1) / options_.period_ms);
}

bool ElasticityModel::AdvanceShopTime(int64_t shop_time_ms) {
  if (shop_time_ms <= 0) return false;
  const int64_t period = PeriodOf(shop_time_ms);
  if (shop_period_ >= 0 && period <= shop_period_) return false;
  shop_period_ = period;
  for (uint32_t row = 0; row < series_.rows(); ++row) {
    const double open = series_.Row(row)[SeriesRow::kOpenPeriod];
    if (open >= 0 && open < period) ClosePeriod(row);
  }
  return true;  // the shop's period is state too
}

void ElasticityModel::ClosePeriod(uint32_t row) {
  using C = SeriesRow;
  Contribute(row, -1);
  double* s = series_.MutableRow(row);
  const double price = s[C::kOpenRevenue] / s[C::kOpenUnits];
  if (options_.forgetting < 1) {
    for (int k = C::kBins; k < C::kCols; ++k) s[k] *= options_.forgetting;
  }
  AddToBins(s, std::log(price), s[C::kOpenUnits]);
  s[C::kMinPrice] = s[C::kPeriods] == 0 ? price : std::min(s[C::kMinPrice], price);
  s[C::kMaxPrice] = std::max(s[C::kMaxPrice], price);
  s[C::kPeriods] += 1;
  s[C::kOpenUnits] = s[C::kOpenRevenue] = 0;
  s[C::kOpenPeriod] = -1;
  FitSeries(s, options_);
  Contribute(row, +1);
}

void ElasticityModel::ApplyPurchase(const Event& event, uint32_t row) {
  using C = SeriesRow;
  const double period = static_cast<double>(PeriodOf(event.timestamp_ms));
  const double open = series_.Row(row)[C::kOpenPeriod];
  if (open >= 0 && period > open) ClosePeriod(row);
  double* s = series_.MutableRow(row);
  // A late event (from an earlier period than the open one) counts in it.
  s[C::kOpenPeriod] = std::max(s[C::kOpenPeriod], period);
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
  auto pool = [&](double sign) {
    const Heterogeneity h = HeterogeneityOf(g);
    shop[G::kWithinQ] += sign * h.q;
    shop[G::kWithinDof] += sign * h.dof;
    shop[G::kWithinScale] += sign * h.scale;
  };
  pool(-1);
  g[G::kSeries] += sign;
  g[G::kPeriods] += sign * s[S::kPeriods];
  if (const Fit f = SeriesFit(s)) {
    g[G::kSumMeanX] += sign * s[S::kMeanX];
    g[G::kSumMeanY] += sign * (s[S::kIntercept] + f.slope * s[S::kMeanX]);
    for (double* r : {g, shop}) {
      r[G::kEstimates] += sign;
      r[G::kSumB] += sign * f.slope;
      r[G::kSumB2] += sign * f.slope * f.slope;
      r[G::kSumVar] += sign * f.se * f.se;
    }
    const double w = 1 / std::max(f.se * f.se, 1e-12);
    g[G::kSumW] += sign * w;
    g[G::kSumWB] += sign * w * f.slope;
    g[G::kSumWB2] += sign * w * f.slope * f.slope;
    g[G::kSumW2] += sign * w * w;
  }
  pool(+1);
  if (sign > 0) {
    g[G::kMinPrice] =
        g[G::kMinPrice] == 0 ? s[S::kMinPrice] : std::min(g[G::kMinPrice], s[S::kMinPrice]);
    g[G::kMaxPrice] = std::max(g[G::kMaxPrice], s[S::kMaxPrice]);
  }
}

std::shared_ptr<const ModelView> ElasticityModel::Publish() {
  auto view = std::make_shared<ElasticityView>();
  view->options_ = options_;
  view->shop_period_ = shop_period_;
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
  w.I64(shop_period_);
  EncodeTable(w, categories_, nullptr);
  EncodeTable(w, group_keys_, &groups_);
  EncodeTable(w, series_keys_, &series_);
  return out;
}

absl::Status ElasticityModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t version = r.U8();
  if (version == 1) {
    // Least-squares sums, which the Poisson fit cannot use: start empty, and
    // recovery replays the whole log into this model.
    return absl::FailedPreconditionError("elasticity: checkpoint format 1 is replaced; replay");
  }
  if (version != kFormatVersion) {
    return absl::DataLossError("elasticity: unknown checkpoint format version");
  }
  if (r.Varint() != SeriesRow::kCols || r.Varint() != GroupRow::kCols) {
    return absl::DataLossError("elasticity: checkpoint has another row layout");
  }
  ElasticityModel fresh(options_, segments_);
  fresh.shop_period_ = r.I64();
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
    if (!row)
      return absl::NotFoundError(
          absl::StrCat("item_id: no purchase or catalogue entry for '", q.item_id, "'"));
    item = series_.Row(*row);
    if (std::optional<uint32_t> r = series_keys_.Find(q.item_id + suffix)) series = series_.Row(*r);
    if (item[S::kCategory] > 0) {
      group_key =
          absl::StrCat(categories_.Name(static_cast<uint32_t>(item[S::kCategory]) - 1), suffix);
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
    return absl::NotFoundError(
        absl::StrCat("segment: no purchases from segment ", *q.segment,
                     q.item_id.empty() ? " in this category" : " of this item"));
  }
  const Fit own = SeriesFit(series);
  const Fit pooled = group ? GroupFit(group) : Fit();

  // Anchor of demand: a pivot ln price and ln E[q] there, of the series'
  // fit (or of the group's typical fitted series); the estimate's slope
  // turns about it.
  std::optional<std::pair<double, double>> anchor;
  if (series != nullptr && series[S::kPeriods] > 0) {
    if (own) {
      anchor = {series[S::kMeanX], series[S::kIntercept] + own.slope * series[S::kMeanX]};
    }
    out.observations = static_cast<uint64_t>(series[S::kPeriods]);
    out.min_price_seen = series[S::kMinPrice];
    out.max_price_seen = series[S::kMaxPrice];
  } else if (q.item_id.empty() && group != nullptr && group[G::kEstimates] > 0) {
    anchor = {group[G::kSumMeanX] / group[G::kEstimates],
              group[G::kSumMeanY] / group[G::kEstimates]};
    out.observations = static_cast<uint64_t>(group[G::kPeriods]);
    out.min_price_seen = group[G::kMinPrice];
    out.max_price_seen = group[G::kMaxPrice];
  }

  if (own) {
    SetEstimate(out, ElasticityLevel::kItem, own.slope, own.se, T95(own.dof));
    const double m = group ? group[G::kEstimates] : 0;
    if (m >= 3) {
      // Empirical Bayes: the between-item variance is what the spread of
      // the item estimates has beyond their own sampling noise, by
      // DerSimonian and Laird's precision-weighted moments (an unweighted
      // spread would be swamped by the noisiest items). A category's own
      // value rests on a handful of items, so the shop's (pooled over every
      // category, this one included) is used unless the category's is
      // clearly larger: Q beyond its degrees of freedom by two standard
      // deviations of a chi-squared.
      const Heterogeneity h = HeterogeneityOf(group);
      double tau2 = BetweenVariance(h.q, h.dof, h.scale);
      double tau2_dof = h.dof;
      if (const std::optional<uint32_t> shop_row = group_keys_.Find(suffix)) {
        const double* shop = groups_.Row(*shop_row);
        const double shop_tau2 =
            BetweenVariance(shop[G::kWithinQ], shop[G::kWithinDof], shop[G::kWithinScale]);
        const double expected_q = h.dof + shop_tau2 * h.scale;
        if (shop[G::kWithinDof] > 0 && h.q <= expected_q + 2 * std::sqrt(2 * expected_q)) {
          tau2 = shop_tau2;
          tau2_dof = shop[G::kWithinDof];
        }
      }
      tau2 = std::max(o.min_between_variance, tau2);
      // The posterior variance in the manner of Morris (1983). The estimate
      // is (1 - b) e + b mean, the mean over the category's m estimates, this
      // one included: given tau2, its error is the item's own noise (weight
      // 1 - b + b/m), its departure from the category (weight b (1 - 1/m))
      // and the other items' departures and noise (b/m each); the estimated
      // shrinkage weight b adds the last term.
      const double s2 = own.se * own.se;
      const double b = s2 / (s2 + tau2);
      const double deviation = own.slope - pooled.slope;
      const double own_weight = 1 - b + b / m, item_weight = b * (1 - 1 / m);
      const double others = (m - 1) * tau2 + group[G::kSumVar] - s2;
      // Var(b) ~ 2 b^2 / dof from the sampling variance of tau2.
      const double var = own_weight * own_weight * s2 + item_weight * item_weight * tau2 +
                         b * b / (m * m) * others + 2 / tau2_dof * b * b * deviation * deviation;
      out.item_elasticity = own.slope;
      out.item_standard_error = own.se;
      SetEstimate(out, ElasticityLevel::kShrunk, own.slope - b * deviation, std::sqrt(var), kZ95);
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
      pp.expected_demand = std::exp(intercept + out.elasticity * std::log(p));
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
