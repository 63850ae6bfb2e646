#include "models/recommend/ials_tuning.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/stable_hash.h"

namespace mercato::core {
namespace {

// The ranges of the first half of the trials, and how far (a factor) the
// rest look around the best so far.
constexpr double kMinUnobservedWeight = 0.5, kMaxUnobservedWeight = 8192;
constexpr double kMinRegularization = 1e-3, kMaxRegularization = 1;
constexpr double kMinHalfLifeDays = 7, kMaxHalfLifeDays = 720;
// An event weight ranges over this factor either way of its start value.
constexpr double kWeightRange = 8;
constexpr double kLocalFactor = 4;
// A trial replaces the configuration in use only when its NDCG@10 is
// higher by this many standard errors of the paired difference.
constexpr double kClearWin = 2;

// The index of purchases in Interaction::counts.
constexpr int kPurchases = static_cast<int>(EventType::kPurchase) - 1;

// A customer's latest basket: the items of their latest purchase not bought
// before (with no purchase, of their latest interaction), held out of
// training and ranked.
struct HeldOut {
  uint32_t user;
  int64_t at;  // the basket's time
  std::vector<uint32_t> items;
  // A purchase: the ranking leaves out only what the customer bought, as
  // `exclude_purchased` does; otherwise everything they interacted with.
  bool bought = false;
};

// A uniform draw in [0, 1), a function of the seed, the trial and the
// hyperparameter.
double Uniform(uint64_t seed, int trial, int which) {
  const uint64_t h = StableHasher().Add(seed).Add(trial).Add(which).value();
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

double LogUniform(double u, double lo, double hi) {
  return std::exp(std::log(lo) + u * (std::log(hi) - std::log(lo)));
}

// Whether `in`, a positive interaction of a customer whose latest basket
// was at `at` (`bought`: a purchase), is in it: for a purchase, an item not
// bought before, so bought once or with nothing decayed under `h` (every
// event at that time, as on two lines of one order: its confidence is its
// counted weight, to float rounding).
bool InBasket(const Interaction& in, int64_t at, bool bought, const IalsHyperparameters& h) {
  if (in.last_ms != at) return false;
  if (!bought) return true;
  if (!(in.flags & kPurchased)) return false;
  constexpr double kRounding = 1e-6;
  return in.counts[kPurchases] == 1 ||
         (h.decay_half_life_days > 0 && in.confidence >= CountedWeight(in, h) * (1 - kRounding));
}

// Takes the latest purchase out of `in`, an item bought before and again in
// a held-out basket: what it weighed, added to its confidence decayed to the
// basket's time; false when nothing positive is left.
bool WithoutLatestPurchase(Interaction& in, const IalsHyperparameters& h) {
  if (in.counts[kPurchases] == 0) return true;
  --in.counts[kPurchases];
  in.confidence -= h.weights[static_cast<int>(EventType::kPurchase)];
  return in.confidence > 0;
}

// Takes the one purchase out of `in`, a held-out basket's item, its
// confidence scaled by what its other events weigh under `h`; false when
// nothing positive is left.
bool WithoutPurchase(Interaction& in, const IalsHyperparameters& h) {
  const double with = CountedWeight(in, h);
  in.counts[kPurchases] = 0;
  in.flags &= static_cast<uint8_t>(~kPurchased);
  const double without = CountedWeight(in, h);
  if (with <= 0 || without <= 0) return false;
  in.confidence = static_cast<float>(in.confidence * without / with);
  return true;
}

// Each active customer's latest basket, by customer: those with a positive
// interaction from before it. (An item bought twice in that basket is no
// earlier interaction: held out with its basket-mates kept, it would be
// ranked from the very order it is in.)
std::vector<HeldOut> LatestOfActive(const IalsState& state) {
  std::vector<HeldOut> held;
  for (uint32_t u = 0; u < state.num_users(); ++u) {
    const History* h = state.history(u);
    if (h == nullptr) continue;
    bool bought = false;
    int64_t at = std::numeric_limits<int64_t>::min();
    for (const Interaction& in : *h) {
      if (in.confidence <= 0) continue;
      const bool b = in.flags & kPurchased;
      if (b != bought ? b : in.last_ms > at) at = in.last_ms;
      bought = bought || b;
    }
    HeldOut basket{u, at, {}, bought};
    bool earlier = false;
    for (const Interaction& in : *h) {
      if (in.confidence <= 0) continue;
      earlier = earlier || in.last_ms < at;
      if (InBasket(in, at, bought, state.options())) basket.items.push_back(in.item);
    }
    if (!basket.items.empty() && earlier) held.push_back(std::move(basket));
  }
  return held;
}

// A seeded sample of at most `max_users` of `held`, by customer.
std::vector<HeldOut> Sample(std::vector<HeldOut> held, size_t max_users, uint64_t seed) {
  if (held.size() > max_users) {
    const auto key = [seed](const HeldOut& h) {
      return StableHasher().Add(seed).Add(h.user).value();
    };
    std::nth_element(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(max_users),
                     held.end(),
                     [&](const HeldOut& a, const HeldOut& b) { return key(a) < key(b); });
    held.resize(max_users);
    std::sort(held.begin(), held.end(),
              [](const HeldOut& a, const HeldOut& b) { return a.user < b.user; });
  }
  return held;
}

// HR@10 (a held-out item in the top 10), NDCG@10 and recall@20 of `trained`
// over `held`, ranking every item but the customer's other ones (an item
// scoring as high as a held-out one ranks above it), and each customer's
// NDCG@10 in `ndcgs`; false when `stop` turned true.
bool Evaluate(const IalsState& trained, const std::vector<HeldOut>& held,
              const std::atomic<bool>& stop, IalsTrial& trial, std::vector<double>& ndcgs) {
  const int k = trained.options().dim;
  const auto n = static_cast<Eigen::Index>(trained.num_items());
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> items(n, k);
  for (Eigen::Index i = 0; i < n; ++i) {
    items.row(i) =
        Eigen::Map<const Eigen::RowVectorXf>(trained.item_row(static_cast<uint32_t>(i)), k);
  }
  // Scored a block of customers at a time: one matrix product per block.
  constexpr size_t kBlock = 32;
  constexpr float kOut = -std::numeric_limits<float>::infinity();
  Eigen::MatrixXf rows(k, static_cast<Eigen::Index>(kBlock)), scores;
  std::vector<float> targets;  // ascending
  std::vector<size_t> above;   // by target: the other items scoring at least as high
  double hits = 0, ndcg = 0, recall = 0;
  ndcgs.clear();
  for (size_t first = 0; first < held.size(); first += kBlock) {
    if (stop.load(std::memory_order_relaxed)) return false;
    const size_t block = std::min(kBlock, held.size() - first);
    for (size_t b = 0; b < block; ++b) {
      rows.col(static_cast<Eigen::Index>(b)) =
          Eigen::Map<const Eigen::VectorXf>(trained.user_row(held[first + b].user), k);
    }
    scores.noalias() = items * rows.leftCols(static_cast<Eigen::Index>(block));
    for (size_t b = 0; b < block; ++b) {
      const HeldOut& h = held[first + b];
      auto column = scores.col(static_cast<Eigen::Index>(b));
      targets.clear();
      for (uint32_t item : h.items) {
        targets.push_back(column[item]);
        column[item] = kOut;
      }
      std::sort(targets.begin(), targets.end());
      if (const History* own = trained.history(h.user)) {
        for (const Interaction& in : *own) {
          if (!h.bought || in.flags & kPurchased) column[in.item] = kOut;
        }
      }
      // An item scoring at least the m lowest targets ranks above each of them.
      above.assign(targets.size() + 1, 0);
      for (Eigen::Index j = 0; j < n; ++j) {
        if (column[j] == kOut) continue;
        ++above[std::upper_bound(targets.begin(), targets.end(), column[j]) - targets.begin()];
      }
      // Target i (ascending) ranks below the items counted at m > i and the
      // targets above it.
      double dcg = 0, ideal = 0, found = 0;
      size_t beaten_by = 0;
      for (size_t i = targets.size(); i-- > 0;) {
        beaten_by += above[i + 1];
        const size_t rank = beaten_by + (targets.size() - 1 - i);
        if (rank < 10) dcg += 1 / std::log2(static_cast<double>(rank) + 2);
        found += rank < 20;
      }
      for (size_t i = 0; i < std::min<size_t>(10, targets.size()); ++i) {
        ideal += 1 / std::log2(static_cast<double>(i) + 2);
      }
      hits += dcg > 0;
      ndcgs.push_back(dcg / ideal);
      ndcg += ndcgs.back();
      recall += found / static_cast<double>(targets.size());
    }
  }
  const double users = static_cast<double>(held.size());
  trial.hr_at_10 = hits / users;
  trial.ndcg_at_10 = ndcg / users;
  trial.recall_at_20 = recall / users;
  return true;
}

// Whether `ndcgs` beat `base` (the same customers'), paired: the mean
// difference more than kClearWin standard errors above zero.
bool ClearlyBetter(const std::vector<double>& ndcgs, const std::vector<double>& base) {
  const double n = static_cast<double>(base.size());
  double sum = 0, squares = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double d = ndcgs[i] - base[i];
    sum += d;
    squares += d * d;
  }
  const double mean = sum / n;
  const double variance = std::max(0.0, squares / n - mean * mean) * n / (n - 1);
  return mean > kClearWin * std::sqrt(variance / n);
}

// One hyperparameter the search varies, with its whole range (of its
// magnitude, for an event weight).
struct Knob {
  double IalsHyperparameters::*field = nullptr;  // null for an event weight
  int type = 0;                                  // the event weight's type
  double lo = 0, hi = 0;
  double Get(const IalsHyperparameters& h) const {
    return field ? h.*field : std::abs(static_cast<double>(h.weights[type]));
  }
  void Set(IalsHyperparameters& h, double v) const {
    if (field) {
      h.*field = v;
    } else {
      h.weights[type] = static_cast<float>(std::copysign(v, h.weights[type]));
    }
  }
};

// The unpinned hyperparameters: the unobserved weight, the regularisation,
// the half-life unless there is no decay, and the weights of the event
// types the interactions have but the largest positive one, which stays
// (scaling every weight is what the unobserved weight and regularisation
// already do).
std::vector<Knob> Knobs(const IalsState& state, const IalsTuningOptions& options) {
  const IalsOptions& start = state.options();
  std::vector<Knob> knobs;
  if (!options.pin_unobserved_weight) {
    knobs.push_back(
        {&IalsHyperparameters::unobserved_weight, 0, kMinUnobservedWeight, kMaxUnobservedWeight});
  }
  if (!options.pin_regularization) {
    knobs.push_back(
        {&IalsHyperparameters::regularization, 0, kMinRegularization, kMaxRegularization});
  }
  if (!options.pin_decay_half_life && start.decay_half_life_days > 0) {
    knobs.push_back(
        {&IalsHyperparameters::decay_half_life_days, 0, kMinHalfLifeDays, kMaxHalfLifeDays});
  }
  if (options.pin_event_weights) return knobs;
  std::array<bool, kNumEventTypes> present{};
  for (uint32_t u = 0; u < state.num_users(); ++u) {
    if (const History* h = state.history(u)) {
      for (const Interaction& in : *h) {
        for (int type = 1; type <= kCountedTypes; ++type) {
          present[type] = present[type] || (in.counts[type - 1] > 0 && start.weights[type] != 0);
        }
      }
    }
  }
  int anchor = 0;
  for (int type = 1; type <= kCountedTypes; ++type) {
    if (present[type] && start.weights[type] > start.weights[anchor]) anchor = type;
  }
  for (int type = 1; type <= kCountedTypes; ++type) {
    if (!present[type] || type == anchor) continue;
    const double w = std::abs(static_cast<double>(start.weights[type]));
    knobs.push_back({nullptr, type, w / kWeightRange, w * kWeightRange});
  }
  return knobs;
}

}  // namespace

uint64_t CountPairs(const IalsState& state) {
  uint64_t pairs = 0;
  for (uint32_t u = 0; u < state.num_users(); ++u) {
    if (const History* h = state.history(u)) {
      pairs += std::count_if(h->begin(), h->end(),
                             [](const Interaction& in) { return in.confidence > 0; });
    }
  }
  return pairs;
}

std::optional<IalsTuning> TuneIals(const IalsState& state, const IalsTuningOptions& options,
                                   int epochs, const std::atomic<bool>& stop) {
  const std::vector<HeldOut> all = LatestOfActive(state);
  if (all.size() < kMinHoldoutUsers) return std::nullopt;
  std::vector<const HeldOut*> basket(state.num_users());
  for (const HeldOut& h : all) basket[h.user] = &h;
  const std::vector<HeldOut> held = Sample(all, options.holdout_users, options.seed);
  // A held-out purchase loses its purchase and keeps what came before it
  // (views, carts), as a storefront knows them when the order comes. So does
  // an item bought before and again in the basket.
  const IalsHyperparameters& now = state.options();
  const auto keep = [&](uint32_t user, Interaction& in) {
    const HeldOut* h = basket[user];
    if (h == nullptr) return true;
    if (std::find(h->items.begin(), h->items.end(), in.item) == h->items.end()) {
      return in.last_ms != h->at || !(in.flags & kPurchased) || WithoutLatestPurchase(in, now);
    }
    if (!(in.flags & kPurchased)) return false;
    return WithoutPurchase(in, now);
  };

  IalsTuning tuning;
  tuning.holdout_users = held.size();
  tuning.pairs = CountPairs(state);
  const IalsOptions start = state.options();
  std::vector<double> base, ndcgs;  // trial 0's and this trial's per customer
  size_t best = 0;                  // the highest NDCG@10 so far, clear or not
  const std::vector<Knob> knobs = Knobs(state, options);
  // The first half of the trials draw the unobserved weight, the
  // regularisation and the half-life, which matter most, from their whole
  // ranges (every knob when none of them is searched), as a Latin
  // hypercube: each knob's log-range cut into as many strata as these
  // trials, one draw in each, the strata paired at random. The others move
  // the best so far, each knob with this chance (one at least) by up to
  // kLocalFactor either way.
  const int global_trials = (options.trials - 1) / 2;
  size_t global_knobs =
      std::count_if(knobs.begin(), knobs.end(), [](const Knob& k) { return k.field != nullptr; });
  if (global_knobs == 0) global_knobs = knobs.size();
  std::vector<std::vector<int>> strata(global_knobs);
  for (size_t k = 0; k < global_knobs; ++k) {
    for (int i = 0; i < global_trials; ++i) strata[k].push_back(i);
    const auto key = [&](int i) { return StableHasher().Add(options.seed).Add(k).Add(i).value(); };
    std::sort(strata[k].begin(), strata[k].end(), [&](int a, int b) { return key(a) < key(b); });
  }
  const double move = knobs.empty() ? 0 : std::min(1.0, 2.0 / static_cast<double>(knobs.size()));
  for (int t = 0; t < std::max(1, options.trials); ++t) {
    IalsTrial trial{start.hyperparameters()};
    IalsHyperparameters& h = trial.hyperparameters;
    if (t > 0 && t <= global_trials) {
      for (size_t k = 0; k < global_knobs; ++k) {
        const double u =
            (strata[k][t - 1] + Uniform(options.seed, t, static_cast<int>(k))) / global_trials;
        knobs[k].Set(h, LogUniform(u, knobs[k].lo, knobs[k].hi));
      }
    } else if (t > 0 && !knobs.empty()) {
      trial = tuning.trials[best];
      bool moved = false;
      for (size_t k = 0; k < knobs.size(); ++k) {
        const bool last = k + 1 == knobs.size();
        const int which = static_cast<int>(2 * k);
        if (Uniform(options.seed, t, which) >= move && !(last && !moved)) continue;
        const double v = knobs[k].Get(h);
        knobs[k].Set(
            h, LogUniform(Uniform(options.seed, t, which + 1), v / kLocalFactor, v * kLocalFactor));
        moved = true;
      }
    }
    IalsState fresh = state.Restarted(start.With(h), keep);
    if (!fresh.Train(epochs, &stop) || !Evaluate(fresh, held, stop, trial, ndcgs)) {
      return std::nullopt;
    }
    tuning.trials.push_back(trial);
    if (t == 0) base = ndcgs;
    if (trial.ndcg_at_10 > tuning.trials[best].ndcg_at_10) best = t;
    if (t > 0 && trial.ndcg_at_10 > tuning.adopted().ndcg_at_10 && ClearlyBetter(ndcgs, base)) {
      tuning.winner = static_cast<uint32_t>(t);
    }
  }
  return tuning;
}

// A trial is written as its unobserved weight, regularisation, metrics,
// half-life and event weights.
void IalsTuning::Encode(ByteWriter& w) const {
  w.Varint(trials.size());
  for (const IalsTrial& t : trials) {
    const IalsHyperparameters& h = t.hyperparameters;
    for (double x : {h.unobserved_weight, h.regularization, t.hr_at_10, t.ndcg_at_10,
                     t.recall_at_20, h.decay_half_life_days}) {
      w.F64(x);
    }
    for (float x : h.weights) w.F32(x);
  }
  w.Varint(winner);
  w.Varint(holdout_users);
  w.Varint(pairs);
}

IalsTuning IalsTuning::Decode(ByteReader& r, bool weights, const IalsHyperparameters& base) {
  IalsTuning t;
  const uint64_t n = r.Varint();
  for (uint64_t i = 0; i < n && r.status().ok(); ++i) {
    IalsTrial trial{base};
    IalsHyperparameters& h = trial.hyperparameters;
    for (double* x : {&h.unobserved_weight, &h.regularization, &trial.hr_at_10, &trial.ndcg_at_10,
                      &trial.recall_at_20}) {
      *x = r.F64();
    }
    if (weights) {
      h.decay_half_life_days = r.F64();
      for (float& x : h.weights) x = r.F32();
    }
    t.trials.push_back(trial);
  }
  const uint64_t winner = r.Varint();
  if (winner >= t.trials.size() || !t.trials[winner].hyperparameters.Valid()) {
    r.Invalidate();
    return t;
  }
  t.winner = static_cast<uint32_t>(winner);
  t.holdout_users = r.Varint();
  t.pairs = r.Varint();
  return t;
}

}  // namespace mercato::core
