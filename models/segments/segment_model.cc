#include "models/segments/segment_model.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/bytes.h"
#include "core/learner.h"
#include "core/stable_hash.h"
#include "core/table_codec.h"

namespace mercato::core {

const char* const kSegmentFeatureNames[kNumSegmentFeatures] = {
    "recency_days", "orders",      "average_order_value", "tenure_days",
    "cart_abandon_rate", "refund_rate", "categories_bought"};

namespace {

// 2: order keys and the reservoir by stable hashes (core/stable_hash.h);
// format 1's were seeded per process and is rebuilt from the log.
constexpr uint8_t kFormatVersion = 2;
constexpr double kDayMs = 24.0 * 3600 * 1000;
using Features = std::array<double, kNumSegmentFeatures>;

// Per-customer raw behaviour.
enum UserCol : int {
  kFirstSeen,         // ms; 0 = unknown (never seen, or erased)
  kFirstPurchase,
  kLastPurchase,
  kOrders,
  kRevenue,
  kFirstOrderRevenue,
  kLastOrderKey,      // which order the last purchase line belonged to
  kUnits,
  kUnitsRefunded,
  kCarts,
  kPurchaseLines,
  kCategoryMask,      // 48 bits: categories bought, hashed
  kUserCols
};

// The order a purchase line belongs to: its order id, or without one the
// minute it happened in. A 48-bit value, exact in a double.
double OrderKey(const Event& e) {
  const uint64_t h = e.order_id.empty()
                         ? StableHash(e.timestamp_ms / 60000)
                         : StableHash(std::string_view(e.order_id));
  return static_cast<double>((h >> 16) | 1);
}

// Natural values of the features: what profiles show.
Features NaturalFeatures(const double* u, int64_t now_ms) {
  Features f{};
  f[0] = std::max(0.0, (now_ms - u[kLastPurchase]) / kDayMs);
  f[1] = u[kOrders];
  f[2] = u[kOrders] > 0 ? u[kRevenue] / u[kOrders] : 0;
  f[3] = std::max(0.0, (now_ms - u[kFirstPurchase]) / kDayMs);
  f[4] = u[kCarts] > 0 ? std::max(0.0, 1 - u[kPurchaseLines] / u[kCarts]) : 0;
  f[5] = u[kUnits] > 0 ? std::min(1.0, u[kUnitsRefunded] / u[kUnits]) : 0;
  f[6] = std::popcount(static_cast<uint64_t>(u[kCategoryMask]));
  return f;
}

// The features k-means sees, before standardising: skewed ones log-scaled.
Features Transform(const Features& natural) {
  Features f = natural;
  for (int i : {0, 1, 2, 3, 6}) f[i] = std::log1p(f[i]);
  return f;
}

// Weights of the standardised features in the distance. Segments are about
// how customers buy over time (recency, orders, tenure); order value counts
// half, and the behaviour shares a quarter: they refine segments, and at full
// weight their noise would split customers who buy alike.
constexpr Features kWeights = {1.0, 1.0, 0.5, 1.0, 0.25, 0.25, 0.25};

Features Standardise(const Features& f, const SegmentFit& fit) {
  Features z;
  for (int i = 0; i < kNumSegmentFeatures; ++i) {
    z[i] = kWeights[i] * (f[i] - fit.mean[i]) / fit.sd[i];
  }
  return z;
}

double Distance2(const Features& a, const Features& b) {
  double d = 0;
  for (int i = 0; i < kNumSegmentFeatures; ++i) d += (a[i] - b[i]) * (a[i] - b[i]);
  return d;
}

size_t Nearest(const std::vector<Features>& centroids, const Features& z, double* d2 = nullptr) {
  size_t best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (size_t c = 0; c < centroids.size(); ++c) {
    const double d = Distance2(centroids[c], z);
    if (d < best_d) best_d = d, best = c;
  }
  if (d2) *d2 = best_d;
  return best;
}

// The cheapest one-to-one assignment of rows to columns of `cost` (rows <=
// columns): exhaustive up to 8 columns, greedy beyond.
std::vector<size_t> Assign(const std::vector<std::vector<double>>& cost) {
  const size_t rows = cost.size(), cols = rows ? cost[0].size() : 0;
  std::vector<size_t> best(rows);
  if (cols <= 8) {
    std::vector<size_t> perm(cols);
    std::iota(perm.begin(), perm.end(), 0);
    double best_cost = std::numeric_limits<double>::infinity();
    do {
      double c = 0;
      for (size_t r = 0; r < rows; ++r) c += cost[r][perm[r]];
      if (c < best_cost) best_cost = c, best.assign(perm.begin(), perm.begin() + rows);
    } while (std::next_permutation(perm.begin(), perm.end()));
    return best;
  }
  std::vector<bool> used(cols, false);
  for (size_t r = 0; r < rows; ++r) {
    size_t pick = 0;
    double pick_cost = std::numeric_limits<double>::infinity();
    for (size_t c = 0; c < cols; ++c) {
      if (!used[c] && cost[r][c] < pick_cost) pick_cost = cost[r][c], pick = c;
    }
    used[pick] = true;
    best[r] = pick;
  }
  return best;
}

// Readable names and where their segments sit in standardised (recency,
// orders, order value, tenure).
struct Prototype {
  const char* label;
  std::array<double, 4> z;
};
constexpr Prototype kPrototypes[] = {
    {"champions", {-1.0, 1.5, 0.3, 0.3}},  {"loyal", {-0.3, 0.5, 0.0, 0.3}},
    {"new", {-1.0, -1.0, 0.0, -2.0}},      {"at_risk", {1.0, 0.5, 0.0, 0.3}},
    {"hibernating", {1.5, -1.0, -0.3, 0.3}}, {"promising", {-0.5, -0.5, 0.0, -0.8}},
    {"big_spenders", {0.0, 0.0, 2.0, 0.0}},  {"needs_attention", {0.5, 0.0, 0.0, 0.0}},
};

// `previous` maps segment ids to their earlier labels: a segment keeps its
// name unless another fits its profile clearly better.
void NameSegments(SegmentFit& fit, const SegmentFit* previous) {
  const size_t k = fit.centroids.size();
  const size_t named = std::min(k, std::size(kPrototypes));
  // The first eight segments get the names of the prototypes nearest them,
  // one name each.
  std::vector<std::vector<double>> cost(named, std::vector<double>(std::size(kPrototypes)));
  for (size_t r = 0; r < named; ++r) {
    for (size_t p = 0; p < std::size(kPrototypes); ++p) {
      double d = 0;
      for (int i = 0; i < 4; ++i) {
        const double z = fit.centroids[r][i] / kWeights[i];
        d += (z - kPrototypes[p].z[i]) * (z - kPrototypes[p].z[i]);
      }
      if (previous != nullptr) {
        for (const SegmentProfileInfo& old : previous->profiles) {
          if (old.id == fit.profiles[r].id && old.label == kPrototypes[p].label) d -= 1.0;
        }
      }
      cost[r][p] = d;
    }
  }
  const std::vector<size_t> names = Assign(cost);
  for (size_t c = 0; c < k; ++c) {
    fit.profiles[c].label =
        c < named ? kPrototypes[names[c]].label : absl::StrCat("segment_", fit.profiles[c].id);
  }
}

struct RefitInput {
  RowBlockView<double> users;
  int64_t now_ms = 0;
  std::shared_ptr<const SegmentFit> previous;
  std::vector<uint32_t> reservoir;
  SegmentOptions options;
  // Set at shutdown: the refit ends early, with no result.
  const std::atomic<bool>* stop = nullptr;
};

std::shared_ptr<const SegmentFit> Refit(const RefitInput& in) {
  const absl::Time start = absl::Now();
  const auto stopped = [&in] { return in.stop && in.stop->load(std::memory_order_relaxed); };
  const SegmentOptions& o = in.options;
  std::mt19937_64 rng(o.seed ^ (in.previous ? in.previous->number : 0));
  std::vector<uint32_t> customers;
  for (uint32_t u = 0; u < in.users.rows(); ++u) {
    if (in.users.Row(u)[kFirstSeen] > 0 && in.users.Row(u)[kOrders] > 0) customers.push_back(u);
  }
  auto fit = std::make_shared<SegmentFit>();
  fit->number = in.previous ? in.previous->number + 1 : 1;
  fit->fitted_at_ms = in.now_ms;
  if (customers.empty()) return nullptr;

  // Standardisation and quintiles over every customer.
  std::vector<Features> x(customers.size());
  std::array<std::vector<double>, 3> rfm;
  for (size_t i = 0; i < customers.size(); ++i) {
    const Features natural = NaturalFeatures(in.users.Row(customers[i]), in.now_ms);
    for (int j = 0; j < 3; ++j) rfm[j].push_back(natural[j]);
    x[i] = Transform(natural);
    for (int j = 0; j < kNumSegmentFeatures; ++j) fit->mean[j] += x[i][j] / customers.size();
  }
  for (const Features& f : x) {
    for (int j = 0; j < kNumSegmentFeatures; ++j) {
      fit->sd[j] += (f[j] - fit->mean[j]) * (f[j] - fit->mean[j]) / customers.size();
    }
  }
  for (double& s : fit->sd) s = std::sqrt(s) > 1e-9 ? std::sqrt(s) : 1;
  for (Features& f : x) f = Standardise(f, *fit);
  for (int j = 0; j < 3; ++j) {
    std::sort(rfm[j].begin(), rfm[j].end());
    for (int q = 0; q < 4; ++q) fit->quintiles[j][q] = rfm[j][(q + 1) * (rfm[j].size() - 1) / 5];
  }

  // Start: the best, by inertia on the reservoir's customers after a few
  // Lloyd steps, of the previous centroids moved into this standardisation
  // and three k-means++ draws. A fresh draw each time keeps an early fit on
  // a young shop from living on; matching below keeps the ids stable.
  const size_t k = std::min<size_t>(o.k, customers.size());
  std::vector<Features> sample;
  for (uint32_t u : in.reservoir) {
    const double* r = u < in.users.rows() ? in.users.Row(u) : nullptr;
    if (r && r[kOrders] > 0 && r[kFirstSeen] > 0) {
      sample.push_back(Standardise(Transform(NaturalFeatures(r, in.now_ms)), *fit));
    }
  }
  if (sample.size() < k) sample = x;
  std::vector<std::vector<Features>> starts;
  if (in.previous && in.previous->centroids.size() == k) {
    std::vector<Features> moved;
    for (const Features& c : in.previous->centroids) {
      Features raw;
      for (int j = 0; j < kNumSegmentFeatures; ++j) {
        raw[j] = c[j] / kWeights[j] * in.previous->sd[j] + in.previous->mean[j];
      }
      moved.push_back(Standardise(raw, *fit));
    }
    starts.push_back(std::move(moved));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::vector<Features> c = {sample[rng() % sample.size()]};
    std::vector<double> d2(sample.size());
    while (c.size() < k) {
      double total = 0;
      for (size_t i = 0; i < sample.size(); ++i) {
        Nearest(c, sample[i], &d2[i]);
        total += d2[i];
      }
      double pick = std::uniform_real_distribution<double>(0, total)(rng);
      size_t i = 0;
      while (i + 1 < sample.size() && (pick -= d2[i]) > 0) ++i;
      c.push_back(sample[i]);
    }
    starts.push_back(std::move(c));
  }
  std::vector<Features> centroids;
  double best_inertia = std::numeric_limits<double>::infinity();
  for (std::vector<Features>& c : starts) {
    double inertia = 0;
    for (int step = 0; step < 20; ++step) {
      std::vector<Features> sum(k, Features{});
      std::vector<double> n(k, 0);
      inertia = 0;
      for (const Features& s : sample) {
        double d;
        const size_t j = Nearest(c, s, &d);
        inertia += d;
        n[j] += 1;
        for (int f = 0; f < kNumSegmentFeatures; ++f) sum[j][f] += s[f];
      }
      for (size_t j = 0; j < k; ++j) {
        if (n[j] == 0) continue;
        for (int f = 0; f < kNumSegmentFeatures; ++f) c[j][f] = sum[j][f] / n[j];
      }
    }
    if (inertia < best_inertia) best_inertia = inertia, centroids = c;
  }
  std::vector<double> counts(k, 0);

  // Mini-batch k-means with per-centroid learning rates 1 / count.
  std::vector<size_t> batch_assign(o.batch_size);
  for (int it = 0; it < o.iterations; ++it) {
    if (stopped()) return nullptr;
    std::vector<size_t> batch(std::min<size_t>(o.batch_size, x.size()));
    for (size_t& b : batch) b = rng() % x.size();
    for (size_t i = 0; i < batch.size(); ++i) batch_assign[i] = Nearest(centroids, x[batch[i]]);
    for (size_t i = 0; i < batch.size(); ++i) {
      const size_t c = batch_assign[i];
      counts[c] += 1;
      const double eta = 1 / counts[c];
      for (int f = 0; f < kNumSegmentFeatures; ++f) {
        centroids[c][f] = (1 - eta) * centroids[c][f] + eta * x[batch[i]][f];
      }
    }
  }

  // Stable ids: the new centroids take the ids of the old ones they match.
  fit->centroids = centroids;
  fit->profiles.assign(k, SegmentProfileInfo());
  if (in.previous && !in.previous->centroids.empty()) {
    const SegmentFit& prev = *in.previous;
    std::vector<std::vector<double>> cost(
        k, std::vector<double>(std::max(k, prev.centroids.size()), 1e12));
    for (size_t c = 0; c < k; ++c) {
      for (size_t p = 0; p < prev.centroids.size(); ++p) {
        double d = 0;
        for (int j = 0; j < kNumSegmentFeatures; ++j) {
          const double a = centroids[c][j] / kWeights[j] * fit->sd[j] + fit->mean[j];
          const double b = prev.centroids[p][j] / kWeights[j] * prev.sd[j] + prev.mean[j];
          d += kWeights[j] * kWeights[j] * (a - b) * (a - b);
        }
        cost[c][p] = d;
      }
    }
    const std::vector<size_t> match = Assign(cost);
    fit->next_id = prev.next_id;
    for (size_t c = 0; c < k; ++c) {
      fit->profiles[c].id =
          match[c] < prev.centroids.size() ? prev.profiles[match[c]].id : fit->next_id++;
    }
  } else {
    for (size_t c = 0; c < k; ++c) fit->profiles[c].id = c;
    fit->next_id = k;
  }

  // Sizes and profiles from every customer.
  for (size_t i = 0; i < x.size(); ++i) {
    SegmentProfileInfo& p = fit->profiles[Nearest(centroids, x[i])];
    const Features natural = NaturalFeatures(in.users.Row(customers[i]), in.now_ms);
    p.size += 1;
    for (int j = 0; j < kNumSegmentFeatures; ++j) p.mean[j] += natural[j];
  }
  for (SegmentProfileInfo& p : fit->profiles) {
    for (double& m : p.mean) m = p.size ? m / p.size : 0;
  }
  NameSegments(*fit, in.previous.get());

  // Customer value, on a seeded sample when there are very many customers.
  std::vector<RepeatHistory> repeat;
  std::vector<SpendHistory> spend;
  const double keep = std::min(1.0, static_cast<double>(o.value_fit_customers) / customers.size());
  for (uint32_t u : customers) {
    if (keep < 1 && std::uniform_real_distribution<double>(0, 1)(rng) >= keep) continue;
    const double* r = in.users.Row(u);
    RepeatHistory h;
    h.x = r[kOrders] - 1;
    h.t_x = (r[kLastPurchase] - r[kFirstPurchase]) / kDayMs;
    h.T = (in.now_ms - r[kFirstPurchase]) / kDayMs;
    repeat.push_back(h);
    const double repeat_revenue = r[kRevenue] - r[kFirstOrderRevenue];
    if (h.x > 0 && repeat_revenue > 0) spend.push_back({h.x, repeat_revenue / h.x});
  }
  if (stopped()) return nullptr;
  fit->bg_nbd = FitBgNbd(repeat, o.value_fit_evaluations);
  if (stopped()) return nullptr;
  fit->gamma_gamma = FitGammaGamma(spend, o.value_fit_evaluations);
  const absl::Time end = absl::Now();
  fit->run = {absl::ToUnixMillis(end), absl::ToDoubleSeconds(end - start)};
  return fit;
}

void EncodeFit(ByteWriter& w, const SegmentFit* fit) {
  w.U8(fit != nullptr);
  if (!fit) return;
  w.Varint(fit->number);
  w.I64(fit->fitted_at_ms);
  w.Raw(fit->mean.data(), sizeof fit->mean);
  w.Raw(fit->sd.data(), sizeof fit->sd);
  w.Varint(fit->centroids.size());
  for (size_t c = 0; c < fit->centroids.size(); ++c) {
    w.Raw(fit->centroids[c].data(), sizeof(Features));
    const SegmentProfileInfo& p = fit->profiles[c];
    w.Varint(p.id);
    w.Str(p.label);
    w.Varint(p.size);
    w.Raw(p.mean.data(), sizeof p.mean);
  }
  w.Raw(fit->quintiles.data(), sizeof fit->quintiles);
  for (double v : {fit->bg_nbd.r, fit->bg_nbd.alpha, fit->bg_nbd.a, fit->bg_nbd.b,
                   fit->gamma_gamma.p, fit->gamma_gamma.q, fit->gamma_gamma.v}) {
    w.F64(v);
  }
  w.Varint(fit->next_id);
}

std::shared_ptr<const SegmentFit> DecodeFit(ByteReader& r) {
  if (r.U8() == 0) return nullptr;
  auto fit = std::make_shared<SegmentFit>();
  fit->number = r.Varint();
  fit->fitted_at_ms = r.I64();
  r.Raw(fit->mean.data(), sizeof fit->mean);
  r.Raw(fit->sd.data(), sizeof fit->sd);
  const uint64_t k = r.Varint();
  for (uint64_t c = 0; c < k && r.status().ok(); ++c) {
    fit->centroids.emplace_back();
    r.Raw(fit->centroids.back().data(), sizeof(Features));
    SegmentProfileInfo p;
    p.id = static_cast<uint32_t>(r.Varint());
    p.label = r.Str();
    p.size = r.Varint();
    r.Raw(p.mean.data(), sizeof p.mean);
    fit->profiles.push_back(std::move(p));
  }
  r.Raw(fit->quintiles.data(), sizeof fit->quintiles);
  for (double* v : {&fit->bg_nbd.r, &fit->bg_nbd.alpha, &fit->bg_nbd.a, &fit->bg_nbd.b,
                    &fit->gamma_gamma.p, &fit->gamma_gamma.q, &fit->gamma_gamma.v}) {
    *v = r.F64();
  }
  fit->next_id = static_cast<uint32_t>(r.Varint());
  return fit;
}

int Score(double v, const std::array<double, 4>& cuts, bool lower_is_better) {
  int above = 0;
  for (double c : cuts) above += v > c;
  return lower_is_better ? 5 - above : 1 + above;
}

}  // namespace

SegmentModel::SegmentModel(SegmentOptions options)
    : options_(options), user_rows_(kUserCols), item_rows_(1) {}

SegmentModel::~SegmentModel() = default;

bool SegmentModel::Apply(const Event& event) {
  position_ = event.sequence;
  const bool clock_moved = event.shop_time_ms != now_ms_;
  now_ms_ = event.shop_time_ms;
  return ApplyEvent(event) || clock_moved;
}

bool SegmentModel::ApplyEvent(const Event& event) {
  if (event.type == EventType::kItemUpdate) {
    const uint32_t row = items_.FindOrAdd(event.item_id);
    item_rows_.Resize(items_.size());
    if (!event.category.empty()) {
      item_rows_.MutableRow(row)[0] = 1 + categories_.FindOrAdd(event.category) % 48;
    }
    return true;
  }
  if (event.user_id.empty() || event.type == EventType::kFraudLabel ||
      event.type == EventType::kOrderScored) {
    return false;  // a customer is what they do in the shop, not how checkout saw them
  }
  if (event.type == EventType::kUserDelete) {
    const std::optional<uint32_t> row =
        RenameErased(users_, event.user_id, ErasedName(event.sequence));
    if (!row) return false;
    double* u = user_rows_.MutableRow(*row);
    if (u[kOrders] > 0) --customers_;
    std::fill(u, u + kUserCols, 0.0);
    return true;
  }
  const size_t before = users_.size();
  const uint32_t row = users_.FindOrAdd(event.user_id);
  user_rows_.Resize(users_.size());
  if (users_.size() > before) {
    // Algorithm R, with a hash in place of a stateful generator.
    ++users_seen_;
    if (reservoir_.size() < static_cast<size_t>(options_.reservoir_size)) {
      reservoir_.push_back(row);
    } else {
      const uint64_t j = StableHash(options_.seed, users_seen_) % users_seen_;
      if (j < reservoir_.size()) reservoir_[j] = row;
    }
  }
  double* u = user_rows_.MutableRow(row);
  if (u[kFirstSeen] == 0) u[kFirstSeen] = static_cast<double>(event.timestamp_ms);
  switch (event.type) {
    case EventType::kAddToCart:
      u[kCarts] += 1;
      break;
    case EventType::kPurchase:
      ApplyPurchase(event, u);
      break;
    case EventType::kRefund:
      u[kUnitsRefunded] += event.quantity;
      break;
    default:
      break;
  }
  MaybeRefit();
  return true;
}

void SegmentModel::ApplyPurchase(const Event& event, double* u) {
  const double ts = static_cast<double>(event.timestamp_ms);
  const double key = OrderKey(event);
  const double value = event.quantity * event.unit_price;
  if (u[kOrders] == 0) ++customers_;
  if (key != u[kLastOrderKey]) {
    u[kOrders] += 1;
    u[kLastOrderKey] = key;
    if (u[kOrders] == 1) u[kFirstPurchase] = ts;
  }
  if (u[kOrders] == 1) u[kFirstOrderRevenue] += value;
  u[kFirstPurchase] = std::min(u[kFirstPurchase], ts);
  u[kLastPurchase] = std::max(u[kLastPurchase], ts);
  u[kRevenue] += value;
  u[kUnits] += event.quantity;
  u[kPurchaseLines] += 1;
  if (const std::optional<uint32_t> item = items_.Find(event.item_id)) {
    const double bit = item_rows_.Row(*item)[0];
    if (bit > 0) {
      const uint64_t mask = static_cast<uint64_t>(u[kCategoryMask]) | (1ULL << (static_cast<int>(bit) - 1));
      u[kCategoryMask] = static_cast<double>(mask);
    }
  }
  ++purchases_since_fit_;
}

void SegmentModel::MaybeRefit() {
  if (fit_run_.running()) return;
  if (FitDue(options_.refit_every_purchases,
             {purchases_since_fit_, fit_ != nullptr,
              customers_ >= static_cast<uint64_t>(options_.min_customers)})) {
    StartRefit();
  }
}

void SegmentModel::StartRefit() {
  RefitInput in{user_rows_.Freeze(), now_ms_, fit_, reservoir_, options_};
  purchases_since_fit_ = 0;
  fit_run_.Start(position_, options_.adopt_after_events, options_.background,
                 [in = std::move(in)](const std::atomic<bool>& stop) mutable
                 -> std::optional<std::shared_ptr<const SegmentFit>> {
                   in.stop = &stop;
                   std::shared_ptr<const SegmentFit> fit = Refit(in);
                   if (!fit) return std::nullopt;
                   return fit;
                 });
}

FitGate SegmentModel::Gate(uint64_t sequence) {
  return fit_run_.Gate(sequence, [this](std::shared_ptr<const SegmentFit> fit) {
    fit_ = std::move(fit);
  });
}

void SegmentModel::Retrain() {
  if (!fit_run_.running()) StartRefit();
}

void SegmentModel::RefitNow() {
  fit_run_.Finish([this](std::shared_ptr<const SegmentFit> fit) { fit_ = std::move(fit); });
  if (auto fit = Refit({user_rows_.Freeze(), now_ms_, fit_, reservoir_, options_})) {
    fit_ = std::move(fit);
  }
  purchases_since_fit_ = 0;
}

std::optional<uint32_t> SegmentModel::SegmentOf(std::string_view user_id) const {
  if (!fit_) return std::nullopt;
  const std::optional<uint32_t> row = users_.Find(user_id);
  if (!row) return std::nullopt;
  const double* u = user_rows_.Row(*row);
  if (u[kOrders] == 0) return std::nullopt;
  const Features z = Standardise(Transform(NaturalFeatures(u, now_ms_)), *fit_);
  return fit_->profiles[Nearest(fit_->centroids, z)].id;
}

std::shared_ptr<const ModelView> SegmentModel::Publish() {
  auto view = std::make_shared<SegmentView>();
  view->users_ = users_.Freeze();
  view->items_ = items_.Freeze();
  view->user_rows_ = user_rows_.Freeze();
  view->item_rows_ = item_rows_.Freeze();
  view->fit_ = fit_;
  view->now_ms_ = now_ms_;
  view->customers_ = customers_;
  view->purchases_since_fit_ = purchases_since_fit_;
  view->reservoir_ = reservoir_;
  view->users_seen_ = users_seen_;
  view->running_ = fit_run_.status();
  return view;
}

std::string SegmentView::Encode() const {
  std::string out;
  ByteWriter w(&out);
  w.U8(kFormatVersion);
  w.Varint(kUserCols);
  w.I64(now_ms_);
  w.Varint(customers_);
  w.Varint(purchases_since_fit_);
  w.Varint(users_seen_);
  w.Varint(reservoir_.size());
  for (uint32_t r : reservoir_) w.Varint(r);
  EncodeTable(w, users_, &user_rows_);
  EncodeTable(w, items_, &item_rows_);
  EncodeFit(w, fit_.get());
  return out;
}

absl::Status SegmentModel::Decode(std::string_view bytes) {
  ByteReader r(bytes);
  const uint8_t version = r.U8();
  if (version == 1) {
    return absl::FailedPreconditionError("checkpoint of format 1 (hashes of its process); rebuilt from the log");
  }
  if (version != kFormatVersion) {
    return absl::DataLossError("segments: unknown checkpoint format version");
  }
  if (r.Varint() != kUserCols) return absl::DataLossError("segments: another row layout");
  SegmentModel fresh(options_);
  fresh.now_ms_ = r.I64();
  fresh.customers_ = r.Varint();
  fresh.purchases_since_fit_ = r.Varint();
  fresh.users_seen_ = r.Varint();
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    fresh.reservoir_.push_back(static_cast<uint32_t>(r.Varint()));
  }
  DecodeTable(r, fresh.users_, &fresh.user_rows_);
  DecodeTable(r, fresh.items_, &fresh.item_rows_);
  fresh.fit_ = DecodeFit(r);
  if (!r.status().ok()) return r.status();
  if (!r.done()) return absl::DataLossError("segments: trailing bytes in checkpoint");
  *this = std::move(fresh);
  return absl::OkStatus();
}

std::optional<RetrainInfo> SegmentView::LastRetrain() const {
  if (!fit_ || fit_->run.finished_ms == 0) return std::nullopt;
  return fit_->run;
}

std::vector<std::pair<std::string, uint64_t>> SegmentView::Counts() const {
  return {{"users", users_.size()},
          {"customers", customers_},
          {"segments", fit_ ? fit_->centroids.size() : 0},
          {"fits", fit_ ? fit_->number : 0},
          {"refit_running", running_ ? 1u : 0u}};
}

absl::StatusOr<CustomerSegment> SegmentView::Segment(std::string_view user_id, int horizon_days,
                                                     double annual_discount_rate) const {
  const std::optional<uint32_t> row = users_.Find(user_id);
  const double* u = row ? user_rows_.Row(*row) : nullptr;
  if (u == nullptr || u[kFirstSeen] == 0) {
    return absl::NotFoundError(absl::StrCat("user_id: no customer '", std::string(user_id), "'"));
  }
  if (u[kOrders] == 0) {
    return absl::NotFoundError(
        absl::StrCat("user_id: '", std::string(user_id), "' has no purchase yet, so no segment or value"));
  }
  if (!fit_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "segments are not fitted yet: ", customers_, " customers so far; the first fit runs "
        "once enough have bought"));
  }
  const Features natural = NaturalFeatures(u, now_ms_);
  double d2 = 0;
  const size_t c = Nearest(fit_->centroids, Standardise(Transform(natural), *fit_), &d2);
  CustomerSegment out;
  out.segment_id = fit_->profiles[c].id;
  out.label = fit_->profiles[c].label;
  out.distance = std::sqrt(d2);
  out.rfm.recency_days = natural[0];
  out.rfm.frequency = natural[1];
  out.rfm.monetary = natural[2];
  out.rfm.recency_score = Score(natural[0], fit_->quintiles[0], true);
  out.rfm.frequency_score = Score(natural[1], fit_->quintiles[1], false);
  out.rfm.monetary_score = Score(natural[2], fit_->quintiles[2], false);
  RepeatHistory h;
  h.x = u[kOrders] - 1;
  h.t_x = (u[kLastPurchase] - u[kFirstPurchase]) / kDayMs;
  h.T = (now_ms_ - u[kFirstPurchase]) / kDayMs;
  out.expected_purchases = ExpectedPurchases(fit_->bg_nbd, h, horizon_days);
  out.probability_alive = ProbabilityAlive(fit_->bg_nbd, h);
  const double repeat_revenue = u[kRevenue] - u[kFirstOrderRevenue];
  if (fit_->gamma_gamma.q > 1) {
    out.expected_average_spend =
        h.x > 0 && repeat_revenue > 0
            ? ExpectedAverageSpend(fit_->gamma_gamma, {h.x, repeat_revenue / h.x})
            : ExpectedAverageSpend(fit_->gamma_gamma, {0, 0});
  } else {
    // Too few repeat buyers for a spend model: the customer's own average.
    out.expected_average_spend = natural[2];
  }
  // Purchases spread over the horizon, discounted at its midpoint.
  out.customer_value = out.expected_purchases * out.expected_average_spend /
                       std::pow(1 + annual_discount_rate, horizon_days / 365.0 / 2);
  return out;
}

}  // namespace mercato::core
