// Fraud risk of an order: logistic regression over velocity, mismatch and
// history features, the basket and the shop's own order attributes, trained
// online by FTRL-Proximal (McMahan et al. 2013) on labels that arrive later.
//
// Scoring reads a published view: features come from the order and from the
// state kept per customer, payment fingerprint and device (sliding-window
// order times in rings of kRing, so memory per key is bounded). The score is
// sigmoid((prior + learned) · x): shipped prior weights give sensible scores
// before any label; FTRL learns the correction.
//
// Beyond the dense built-in features:
//   - numeric attributes, standardised by the running mean and variance of
//     their name (z clipped to ±5), each name with a weight of its own, up to
//     `max_attribute_names` names; later names are ignored and counted;
//   - text attributes, hashed as name=value;
//   - the basket: units, distinct items, the dearest unit price and whether
//     the customer bought any of its items before (dense), and its amount's
//     share per category of the catalogue at the first two levels of the
//     path (hashed: a catalogue's top level is often one shared root);
//   - the built-in categorical crosses (hashed).
// Hashed features share 2^hash_bits weights; a bucket first taken by one
// feature and then hit by another counts as a collision (hash_collisions). The server writes every
// scored order with its features to the log (ORDER_SCORED); applying it
// updates the velocity state and keeps the features until the order's label
// (FRAUD_LABEL) arrives, or until `maturity` passes without one, when it
// counts as legitimate. A label therefore trains on what was known when the
// order was scored, never on later state.
//
// Labels of one order: the first trains. The same label again (a new event
// id) changes nothing and is counted as `repeated_labels`; a different one is
// a correction, trained as one more step toward the new value, and counted
// as `changed_labels`. A label after the maturity counts as the first.
//
// Threads: FraudModel belongs to the learner thread (core/model.h).
// FraudView is immutable and thread-safe (Score is called by every serving
// thread), and shares its rows and weights with the model and other views.
#ifndef MERCATO_MODELS_FRAUD_FRAUD_MODEL_H_
#define MERCATO_MODELS_FRAUD_FRAUD_MODEL_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

inline constexpr char kFraudModelName[] = "fraud";

// How Score decides: by probability thresholds, or by the expected loss
// p x amount against costs.
enum class FraudRule { kThreshold, kExpectedLoss };

struct FraudOptions {
  // FTRL-Proximal learning rate parameters and L1 / L2 strengths.
  double alpha = 0.1, beta = 1.0, l1 = 0.5, l2 = 1.0;
  // An order without a label this long after it was placed is legitimate.
  int64_t maturity_ms = 30LL * 24 * 3600 * 1000;
  FraudRule rule = FraudRule::kThreshold;
  // kThreshold: REVIEW from this probability, DECLINE from that one.
  double review_threshold = 0.3, decline_threshold = 0.8;
  // kExpectedLoss: REVIEW from this expected loss, DECLINE from that one.
  double review_loss = 20, decline_loss = 100;
  // Reason codes returned.
  int reasons = 3;
  // Hashed features share 2^hash_bits weights.
  int hash_bits = 14;
  // Numeric attribute names learned, at most.
  int max_attribute_names = 256;
  // Brier score and log loss are over the last this many scored orders whose
  // label (or maturity) came.
  int calibration_window = 1000;
};

// A shop-specific signal of an order: a number or a text.
struct FraudAttribute {
  std::string name;
  std::optional<double> number;
  std::string text;
};

struct FraudLine {
  std::string item_id;
  double quantity = 0, unit_price = 0;
};

// The order as the fraud model sees it. Amounts are in the order currency.
struct FraudOrder {
  std::string order_id, user_id, payment_fingerprint, device_id, shipping_address_hash;
  std::string billing_country, shipping_country, ip_country, currency;
  double amount = 0;
  int64_t account_created_ms = 0;
  int64_t timestamp_ms = 0;
  // Sorted by name, names unique.
  std::vector<FraudAttribute> attributes;
  std::vector<FraudLine> lines;
};

inline constexpr int kNumDenseFraudFeatures = 22;

// A hashed feature: its 64-bit key (never 0) and value.
struct HashedFraudFeature {
  uint64_t key = 0;
  float value = 0;
  bool operator==(const HashedFraudFeature&) const = default;
};

// A numeric attribute as scored: its raw value (for the running mean and
// variance) and the z it was scored with.
struct NumericFraudFeature {
  std::string name;
  double raw = 0;
  float z = 0;
  bool operator==(const NumericFraudFeature&) const = default;
};

// A scored order's features, as its ORDER_SCORED record keeps them.
struct FraudFeatures {
  std::array<double, kNumDenseFraudFeatures> dense{};
  std::vector<HashedFraudFeature> hashed;
  std::vector<NumericFraudFeature> numeric;
  bool operator==(const FraudFeatures&) const = default;
};

enum class FraudDecision { kApprove = 1, kReview = 2, kDecline = 3 };

struct FraudReason {
  std::string feature;  // readable, e.g. "attributes.payment_method=crypto"
  double value = 0;
  double contribution = 0;  // weight x value, in log-odds
};

struct FraudScore {
  double probability = 0;
  FraudDecision decision = FraudDecision::kApprove;
  // The rule that decided, readable, e.g. "probability 0.84 >= decline
  // threshold 0.8".
  std::string decided_by;
  std::vector<FraudReason> reasons;
  FraudFeatures features;
  // True when the order was scored before and its stored features were used.
  bool rescored = false;
};

// Readable names of the dense features.
extern const char* const kFraudFeatureNames[kNumDenseFraudFeatures];

// What an order row keeps beyond its dense features: its hashed features and
// its numeric attributes by name slot.
struct FraudSparseRow {
  struct Numeric {
    uint32_t slot;
    double raw;
    float z;
  };
  std::vector<HashedFraudFeature> hashed;
  std::vector<Numeric> numeric;
};

class FraudView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  // brier_score and log_loss over the calibration window (0 when empty).
  std::vector<std::pair<std::string, double>> Gauges() const override;
  // Scores `order`. An order already scored and applied keeps the features
  // it had then.
  FraudScore Score(const FraudOrder& order) const;
  // The label a scored order was last trained on (0 legitimate, 1 fraud), or
  // nullopt when it has none yet.
  std::optional<double> LabelOf(std::string_view order_id) const;
  // On a FRAUD_LABEL for an order already labelled: a repeat or a correction.
  std::string Note(const Event& event) const override;
  // The features stored for a scored order, or nullopt.
  std::optional<FraudFeatures> StoredFeatures(std::string_view order_id) const;
  // The ORDER_SCORED event that records `order` scored with `score`.
  static Event RecordEvent(const FraudOrder& order, const FraudScore& score);
  // Calls `visit` on each identifier an ORDER_SCORED record carries (its
  // payment fingerprint, device id and address hash), which may change it;
  // the record is written again with the changed ones. Nothing for other
  // events.
  static void VisitIdentifiers(Event& event, const std::function<void(std::string&)>& visit);

 private:
  friend class FraudModel;
  // A hashed feature's readable name, in parts that view strings outliving
  // the call (static names, this view's dictionaries, the order).
  struct FeatureName {
    uint64_t key = 0;
    std::array<std::string_view, 4> parts;
  };
  // A feature's share of the log-odds: f.dense[index], f.numeric[index] or
  // f.hashed[index].
  struct Contribution {
    enum Kind { kDense, kNumeric, kHashed } kind;
    size_t index;
    double value, contribution;
  };
  // The features of `order`; with `names`, the name of each hashed feature.
  FraudFeatures Compute(const FraudOrder& order, std::vector<FeatureName>* names) const;
  // `f`'s log-odds; with `reasons`, its positive contributions.
  double Logit(const FraudFeatures& f, std::vector<Contribution>* reasons) const;
  static FraudReason Name(const Contribution& c, const FraudFeatures& f,
                          const std::vector<FeatureName>& names);
  std::optional<uint32_t> SlotOf(std::string_view attribute) const;
  // How Score decides, and the rule's readable form.
  FraudDecision Decide(double probability, double amount, std::string* decided_by) const;

  FraudOptions options_;
  IdDictionaryView users_, cards_, devices_, orders_, attribute_names_, items_, categories_;
  RowBlockView<double> user_rows_, card_rows_, device_rows_, order_rows_, attribute_stats_;
  RowBlockView<uint32_t> item_category_;
  RowBlockView<std::shared_ptr<const FraudSparseRow>> order_sparse_;
  // Learned weights (dense, numeric attribute slots, hash buckets) and the
  // FTRL state behind them.
  std::shared_ptr<const std::vector<double>> weights_, z_, n_;
  // Hash buckets' first keys (0 = free); the calibration window as
  // (probability, label) pairs, oldest first once full, and where it goes on.
  std::shared_ptr<const std::vector<uint64_t>> bucket_keys_;
  std::shared_ptr<const std::vector<std::pair<float, uint8_t>>> calibration_;
  uint64_t calibration_next_ = 0;
  // Labels waiting for their order's record, in log order (FraudModel).
  std::shared_ptr<const std::vector<std::pair<std::string, double>>> early_labels_;
  double brier_ = 0, log_loss_ = 0;
  int64_t now_ms_ = 0;
  uint64_t labels_ = 0, unknown_labels_ = 0, matured_ = 0;
  uint64_t repeated_labels_ = 0, changed_labels_ = 0;
  uint64_t hash_collisions_ = 0, names_over_limit_ = 0;
};

class FraudModel final : public Model {
 public:
  explicit FraudModel(FraudOptions options = {});
  std::string_view name() const override { return kFraudModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;

 private:
  void ApplyOrder(const Event& event);
  void ApplyLabel(const Event& event);
  // A label of the order in row `order`.
  void Label(uint32_t order, double label);
  void ApplyEraseKeys(const Event& e);
  void ApplyItemUpdate(const Event& event);
  void ApplyPurchase(const Event& event);
  void Train(uint32_t order_row, double label);
  // Trains the orders older than the maturity as legitimate.
  void Mature(int64_t now_ms);
  // The first label or the maturity of an order scored with `probability`.
  void Calibrate(double probability, double label);
  double Weight(int i) const;
  int dims() const;

  FraudOptions options_;
  IdDictionary users_, cards_, devices_, orders_, attribute_names_, items_, categories_;
  RowBlockMatrix<double> user_rows_, card_rows_, device_rows_, order_rows_, attribute_stats_;
  RowBlockMatrix<uint32_t> item_category_;
  RowBlockMatrix<std::shared_ptr<const FraudSparseRow>> order_sparse_;
  // FTRL state per coordinate, and the weights it gives.
  std::vector<double> z_, n_;
  std::vector<uint64_t> bucket_keys_;
  std::vector<std::pair<float, uint8_t>> calibration_;
  uint64_t calibration_next_ = 0;
  // Published copies, replaced when training changed them.
  std::shared_ptr<const std::vector<double>> weights_, published_z_, published_n_;
  std::shared_ptr<const std::vector<uint64_t>> published_bucket_keys_;
  std::shared_ptr<const std::vector<std::pair<float, uint8_t>>> published_calibration_;
  bool weights_stale_ = true, buckets_stale_ = true, calibration_stale_ = true;
  // Orders awaiting a label or maturity, oldest first (rebuilt from the
  // order rows on Decode).
  std::deque<uint32_t> pending_;
  // Labels that came before their order's ORDER_SCORED record (Score
  // records an order in the background, a moment after it answers), at
  // most kMaxEarlyLabels: each order id's label and its place in arrival
  // order, and the ids by that place; an order's record, when it comes,
  // takes its label. The oldest beyond the bound are dropped and counted as
  // unknown.
  absl::flat_hash_map<std::string, std::pair<double, uint64_t>> early_labels_;
  std::map<uint64_t, std::string> early_order_;
  uint64_t early_next_ = 0;
  std::shared_ptr<const std::vector<std::pair<std::string, double>>> published_early_labels_;
  bool early_stale_ = true;
  int64_t now_ms_ = 0;
  uint64_t labels_ = 0, unknown_labels_ = 0, matured_ = 0;
  uint64_t repeated_labels_ = 0, changed_labels_ = 0;
  uint64_t hash_collisions_ = 0, names_over_limit_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FRAUD_FRAUD_MODEL_H_
