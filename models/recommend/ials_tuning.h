// A search over iALS hyperparameters (the unobserved weight, the
// regularisation, the confidence weights per event type and the decay
// half-life) on the model's own interactions, run inside a retrain
// (retrain_run.h), so that it starts at a log position and its winner is
// adopted at one like any retrain's result.
//
// As of the state it starts from, each active customer (with a positive
// interaction besides their latest basket) has that basket held out: the
// items of their latest purchase they had not bought before (with no
// purchase, of their latest interaction), the next order as a shop sees it.
// An item bought before and again in that basket keeps only its earlier
// purchases in training.
// Every trial trains a fresh state (IalsState::Restarted, which re-weighs
// each pair from its event counts for the trial's event weights and
// half-life) on the rest for the retrain's epochs and ranks every item for a
// seeded sample of at most `holdout_users` of those customers, their other
// items excluded. Every active customer is held out, not only those ranked,
// because the latest interactions are mostly with recent items: with most of
// them still trained on, the holdout is easier than the next interactions
// are. The metrics: HR@10 (a held-out item in the top 10), NDCG@10 and
// recall@20.
// Trial 0 is the configuration in use; the first half of the others draw the
// unobserved weight, the regularisation and the half-life from their whole
// ranges (a Latin hypercube), and the rest move the best so far. The event
// weights searched are those of the event types the interactions have, but
// the largest positive one, which stays: scaling every weight is what the
// unobserved weight and regularisation already do. The configuration in use
// stays unless a trial's NDCG@10 beats it clearly (paired over the
// customers, by two standard errors); of those, the highest wins. Everything
// is seeded and single-threaded, so one state gives one result.
#ifndef MERCATO_MODELS_RECOMMEND_IALS_TUNING_H_
#define MERCATO_MODELS_RECOMMEND_IALS_TUNING_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/bytes.h"
#include "models/recommend/ials.h"

namespace mercato::core {

struct IalsTuningOptions {
  // Trials per search, the configuration in use included (0 = no search).
  int trials = 0;
  // Hyperparameters the search leaves as they are.
  bool pin_unobserved_weight = false, pin_regularization = false, pin_event_weights = false,
       pin_decay_half_life = false;
  // Customers ranked, at most (every active customer is held out).
  size_t holdout_users = 5000;
  uint64_t seed = 42;
  // Whether there is anything to search.
  bool enabled() const {
    return trials > 1 && !(pin_unobserved_weight && pin_regularization && pin_event_weights &&
                           pin_decay_half_life);
  }
};

struct IalsTrial {
  IalsHyperparameters hyperparameters;
  double hr_at_10 = 0, ndcg_at_10 = 0, recall_at_20 = 0;
  bool operator==(const IalsTrial&) const = default;
};

struct IalsTuning {
  std::vector<IalsTrial> trials;
  uint32_t winner = 0;
  // Customers ranked.
  uint64_t holdout_users = 0;
  // Interactions with a positive confidence when it started.
  uint64_t pairs = 0;

  const IalsTrial& adopted() const { return trials[winner]; }
  void Encode(ByteWriter& w) const;
  // `weights`: with the event weights and half-life, which older
  // checkpoints lack (their trials have `base`'s). Errors stay in `r`.
  static IalsTuning Decode(ByteReader& r, bool weights, const IalsHyperparameters& base);
  bool operator==(const IalsTuning&) const = default;
};

// A search is no use with fewer customers to hold out.
inline constexpr size_t kMinHoldoutUsers = 20;

// Interactions with a positive confidence in `state`.
uint64_t CountPairs(const IalsState& state);

// Runs the search from `state`; none when fewer than kMinHoldoutUsers
// customers can be held out, or when `stop` turned true.
std::optional<IalsTuning> TuneIals(const IalsState& state, const IalsTuningOptions& options,
                                   int epochs, const std::atomic<bool>& stop);

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_IALS_TUNING_H_
