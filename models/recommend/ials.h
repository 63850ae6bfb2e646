// Implicit-feedback matrix factorisation: iALS in the form of Rendle et al.
// 2021 ("Revisiting the performance of iALS on item recommendation
// benchmarks"), with per-event fold-in (Takács et al. 2011).
//
// For user u with history I_u and confidences c_ui (decayed with age):
//   min_w  sum_{i in I_u} c_ui (w.h_i - 1)^2 + a0 sum_{all i} (w.h_i)^2
//          + lambda (|I_u| + a0 |I|)^nu |w|^2
// and symmetrically for items. The all-pairs term is a0 w'Gw with the
// Gramian G = sum_i h_i h_i', so each row is one k x k linear system, solved
// here by a few conjugate-gradient steps warm-started from the current row.
//
// Catalogue side information (the category path and attributes of items):
// each feature has a row, the mean direction of the rows of the items with
// it that have interactions, at their mean length and shrunk when they are
// few, fitted after every training epoch. An item's prior is the mean of
// its features' rows. An item is regularised toward its prior (less so as
// its own interactions come) instead of toward zero, and an item without
// interactions has its prior (plus its small seed row) as its row, so that
// it is recommendable from its first catalogue upsert and moves toward its
// own behaviour as interactions come.
//
// IalsState holds the interactions and both factor matrices. The learner
// thread calls Observe() per event: it updates the pair's confidence and
// re-solves the user's row, then the item's row, keeping both Gramians
// current by rank-one updates. A row with more than `fold_in_cap`
// interactions is re-solved on every ceil(n / cap)-th of its events, so the
// per-event cost stays bounded for best sellers and busy accounts.
// Train() runs full alternating epochs (on a copy, on a background thread).
// Everything is single-threaded and in a fixed order, so the same calls give
// the same factors bit for bit.
#ifndef MERCATO_MODELS_RECOMMEND_IALS_H_
#define MERCATO_MODELS_RECOMMEND_IALS_H_

#include <Eigen/Core>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/bytes.h"
#include "core/event.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

// The hyperparameters a search may change (ials_tuning.h). The defaults of
// the first three are the point of a grid that did best across validation
// splits of two kinds of data (clients/BENCHMARKS.md, "Defaults").
struct IalsHyperparameters {
  // W0, the unobserved weight of a whole row: every (user, item) pair counts
  // as an unobserved zero with weight a0 = W0 / (number of items), so the
  // balance of observed and unobserved terms does not drift as the
  // catalogue grows.
  double unobserved_weight = 2048;
  // lambda of the frequency-scaled regularisation.
  double regularization = 0.01;
  // Confidence halves over this age (0 = no decay).
  double decay_half_life_days = 235;
  // Confidence added per event type (indexed by EventType, view..rating);
  // a negative weight subtracts (refunds).
  std::array<float, kNumEventTypes> weights = {0, 1, 1, 3, 0, 8, -8, 2, 0};

  // Finite, and within range.
  bool Valid() const;
  void Encode(ByteWriter& w) const;
  // Errors stay in `r`; values that Valid refuses are errors.
  static IalsHyperparameters Decode(ByteReader& r);
  bool operator==(const IalsHyperparameters&) const = default;
};

struct IalsOptions : IalsHyperparameters {
  // Dimension k of the factors.
  int dim = 64;
  // nu of the frequency-scaled regularisation.
  double regularization_exponent = 1.0;
  // Full-retrain epochs and CG steps per row solve.
  int epochs = 8;
  int cg_steps = 3;
  // Rows with more interactions are re-solved on every ceil(n/cap)-th event.
  int fold_in_cap = 128;
  // Seeds the initial item rows.
  uint64_t seed = 42;
  // A feature row's length is scaled by n / (n + this) for n items.
  double feature_shrinkage = 2;
  // An item with n interactions is regularised toward its prior times
  // m / (m + n) for this m.
  double prior_interactions = 4;

  const IalsHyperparameters& hyperparameters() const { return *this; }
  // These options with `h` instead.
  IalsOptions With(const IalsHyperparameters& h) const {
    IalsOptions o = *this;
    static_cast<IalsHyperparameters&>(o) = h;
    return o;
  }
};

// An item's catalogue features, as feature ids + 1 (0 = none).
inline constexpr int kMaxItemFeatures = 8;
struct ItemFeatures {
  std::array<uint32_t, kMaxItemFeatures> ids{};
  bool empty() const { return ids[0] == 0; }
  bool operator==(const ItemFeatures&) const = default;
};

// The event types an interaction counts: view..rating (EventType 1..7).
inline constexpr int kCountedTypes = 7;

// One (user, item) pair in the user's history.
struct Interaction {
  uint32_t item = 0;
  // Confidence as of last_ms.
  float confidence = 0;
  int64_t last_ms = 0;
  // kSeen and kPurchased bits.
  uint8_t flags = 0;
  // Its events per counted type (saturating at 255), from which other event
  // weights and half-lives re-weigh it (Reweighed).
  std::array<uint8_t, kCountedTypes> counts{};
  bool operator==(const Interaction&) const = default;
};
inline constexpr uint8_t kSeen = 1, kPurchased = 2;

// What the pair's counted events weigh under `h`'s event weights, undecayed.
double CountedWeight(const Interaction& in, const IalsHyperparameters& h);

// The pair's confidence (as of its last_ms) under `to`'s event weights and
// half-life, from its counts and its confidence under `from`'s: the decay
// its events had under `from` is read as one common age, at which they
// decay under `to`. Exact when the weights and half-life are the same, or
// when the pair's events share one time. A pair without counts (from a
// checkpoint that had none) keeps its confidence.
float Reweighed(const Interaction& in, const IalsHyperparameters& from,
                const IalsHyperparameters& to);

// A user's interactions, sorted by item.
using History = std::vector<Interaction>;

// An immutable copy of an IalsState that shares its unchanged row blocks.
struct IalsFrozen {
  RowBlockView<float> users, items;
  // One pointer per user (null = no history).
  RowBlockView<std::shared_ptr<const History>> histories;
  RowBlockView<uint32_t> user_pending, item_pending;
  std::shared_ptr<const Eigen::MatrixXd> gram_users, gram_items;
  RowBlockView<ItemFeatures> item_features;
  RowBlockView<float> feature_rows;
  int64_t now_ms = 0;
  // The layouts IalsState::Decode and DecodeFeatures read.
  void Encode(ByteWriter& w) const;
  void EncodeFeatures(ByteWriter& w) const;
  // The item's features (none past the rows kept).
  const ItemFeatures* features(uint32_t item) const {
    return item < item_features.rows() ? item_features.Row(item) : nullptr;
  }
};

// `confidence` recorded at `last_ms`, decayed to `now_ms`.
double DecayedConfidence(const IalsHyperparameters& options, float confidence, int64_t last_ms,
                         int64_t now_ms);

// Stacks, for each entry (an Interaction or anything with `confidence` and
// `last_ms`) whose confidence decayed to `now_ms` is positive and for which
// `row_of(entry)` gives a row, that row into x and the confidence into c.
template <class Entries, class RowOf>
void GatherObserved(const IalsOptions& options, int64_t now_ms, const Entries& entries,
                    RowOf row_of, Eigen::MatrixXd& x, Eigen::VectorXd& c) {
  x.resize(static_cast<Eigen::Index>(entries.size()), options.dim);
  c.resize(static_cast<Eigen::Index>(entries.size()));
  Eigen::Index n = 0;
  for (const auto& e : entries) {
    const double conf = DecayedConfidence(options, e.confidence, e.last_ms, now_ms);
    const float* row = conf > 0 ? row_of(e) : nullptr;
    if (row == nullptr) continue;
    x.row(n) = Eigen::Map<const Eigen::VectorXf>(row, options.dim).cast<double>().transpose();
    c[n++] = conf;
  }
  x.conservativeResize(n, options.dim);
  c.conservativeResize(n);
}

// a0 for a catalogue of `items` items.
double UnobservedWeight(const IalsOptions& options, size_t items);

// lambda (n + a0 * others)^nu: the regularisation of a row with n observed
// pairs when the other side has `others` rows.
double RowRegularization(const IalsOptions& options, size_t n, double a0, size_t others);

// Solves one row: min over v of sum_j c_j (v.x_j - 1)^2 + a0 v'Gv
// + reg |v - p|^2 for the rows x_j of `x` and the prior p (zero when null),
// by options.cg_steps CG steps from `v`. `others` is the number of rows on
// the other side (for the regularisation).
void SolveFactorRow(const IalsOptions& options, const Eigen::MatrixXd& gram, double a0,
                    size_t others, const Eigen::MatrixXd& x, const Eigen::VectorXd& c,
                    Eigen::VectorXd& v, const Eigen::VectorXd* prior = nullptr);

class IalsState {
 public:
  explicit IalsState(const IalsOptions& options);
  IalsState(const IalsState&) = default;
  IalsState& operator=(const IalsState&) = default;
  IalsState(IalsState&&) = default;
  IalsState& operator=(IalsState&&) = default;

  const IalsOptions& options() const { return options_; }
  // An event of `type` (view..rating) of the user on the item at `t_ms`:
  // changes the pair's confidence by the type's weight (after decaying it to
  // t_ms; never below 0), counts it, marks the pair seen (and purchased),
  // and re-solves the rows.
  void Observe(uint32_t user, uint32_t item, EventType type, int64_t t_ms);
  // Drops the user's history and zeroes the user's row. Returns the items
  // the user had interacted with.
  std::vector<uint32_t> ForgetUser(uint32_t user);
  // Full alternating epochs over every interaction. Returns false, with the
  // rows part-trained, when `stop` turns true first.
  bool Train(int epochs, const std::atomic<bool>* stop = nullptr);

  // A state with the interactions for which `keep(user, interaction)` holds
  // (it may change the copy it is given first) and `options` (of the same
  // dimension), their confidences re-weighed for its event weights and
  // half-life (Reweighed), untrained: user rows zero, item rows seeded as
  // for a new item.
  IalsState Restarted(const IalsOptions& options,
                      const std::function<bool(uint32_t, Interaction&)>& keep) const;
  // `h` from here on: every confidence is re-weighed (Reweighed) when the
  // event weights or half-life change; the rows move when they are next
  // solved.
  void SetHyperparameters(const IalsHyperparameters& h);

  // O(blocks); copies only the Gramians that changed since the last call.
  IalsFrozen Freeze();
  size_t num_items() const { return items_.rows(); }
  size_t num_users() const { return users_.rows(); }
  const float* item_row(uint32_t item) const { return items_.Row(item); }
  const float* user_row(uint32_t user) const { return users_.Row(user); }
  // The user's interactions; null when none.
  const History* history(uint32_t user) const {
    return user < histories_.rows() ? histories_.Row(user)->get() : nullptr;
  }
  // Interactions with a positive confidence, per item.
  uint32_t ItemSupport(uint32_t item) const {
    return item < item_users_.size() ? static_cast<uint32_t>(item_users_[item].size()) : 0;
  }
  // Whether the item's row means something: it has interactions, or its
  // features give it a prior.
  bool HasRow(uint32_t item) const;
  // The item's catalogue features from here on; an item without
  // interactions takes its prior as its row.
  void SetItemFeatures(uint32_t item, const ItemFeatures& features);
  int64_t now_ms() const { return now_ms_; }
  // Items whose rows changed since the last call, in order of change.
  std::vector<uint32_t> TakeChangedItems();

  // Replaces the state with one written by IalsFrozen::Encode (`counts`:
  // with the interactions' counts, which older checkpoints lack). Errors
  // stay in `r`, and then the state is unchanged.
  void Decode(ByteReader& r, bool counts);
  // Reads what IalsFrozen::EncodeFeatures wrote (after Decode), for items
  // below `items` and feature ids below `features`.
  void DecodeFeatures(ByteReader& r, size_t items, size_t features);

 private:
  struct ItemEntry {
    uint32_t user;
    float confidence;
    int64_t last_ms;
  };
  void Grow(uint32_t user, uint32_t item);
  void GrowItems(uint32_t item);
  // The item's small seeded random row.
  Eigen::VectorXd SeedRow(uint32_t item) const;
  // Gives an item without a row its seed row.
  void SeedItemRow(uint32_t item);
  void SolveUserRow(uint32_t user);
  void SolveItemRow(uint32_t item);
  // Replaces a row and updates its Gramian.
  void SetRow(RowBlockMatrix<float>& rows, Eigen::MatrixXd& gram, uint32_t r,
              const Eigen::VectorXd& v);
  static Eigen::MatrixXd Gramian(const RowBlockMatrix<float>& rows);
  // The mean of the item's fitted feature rows; false when it has none.
  bool Prior(uint32_t item, Eigen::VectorXd& prior) const;
  // Fits the feature rows to the item rows, and gives every item without
  // interactions its prior.
  void FitFeatureRows();
  // An item without interactions: its row is its prior (or zero).
  void ResetColdRow(uint32_t item);

  IalsOptions options_;
  RowBlockMatrix<float> users_, items_;
  RowBlockMatrix<std::shared_ptr<const History>> histories_;
  // Per item, its users sorted by user (learner only, rebuilt on Decode).
  std::vector<std::vector<ItemEntry>> item_users_;
  // Events since each row was last solved.
  RowBlockMatrix<uint32_t> user_pending_, item_pending_;
  RowBlockMatrix<ItemFeatures> item_features_;
  RowBlockMatrix<float> feature_rows_;
  Eigen::MatrixXd gram_users_, gram_items_;
  std::shared_ptr<const Eigen::MatrixXd> frozen_gram_users_, frozen_gram_items_;
  std::vector<uint32_t> changed_items_;
  int64_t now_ms_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_IALS_H_
