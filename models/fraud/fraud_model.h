// Fraud risk of an order: logistic regression over velocity, mismatch and
// history features, trained online by FTRL-Proximal (McMahan et al. 2013)
// on labels that arrive later.
//
// Scoring reads a published view: features come from the order and from the
// state kept per customer, payment fingerprint and device (sliding-window
// order times in rings of kRing, so memory per key is bounded). The score is
// sigmoid((prior + learned) · x): shipped prior weights give sensible scores
// before any label; FTRL learns the correction. The server writes every
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
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

inline constexpr char kFraudModelName[] = "fraud";

struct FraudOptions {
  // FTRL-Proximal learning rate parameters and L1 / L2 strengths.
  double alpha = 0.1, beta = 1.0, l1 = 0.5, l2 = 1.0;
  // An order without a label this long after it was placed is legitimate.
  int64_t maturity_ms = 30LL * 24 * 3600 * 1000;
  // Decisions: REVIEW from this probability, DECLINE from that one.
  double review_threshold = 0.3, decline_threshold = 0.8;
  // Reason codes returned.
  int reasons = 3;
};

// The order as the fraud model sees it. Amounts are in the order currency.
struct FraudOrder {
  std::string order_id, user_id, payment_fingerprint, device_id, shipping_address_hash;
  std::string billing_country, shipping_country, ip_country, currency;
  double amount = 0;
  int64_t account_created_ms = 0;
  int64_t timestamp_ms = 0;
};

inline constexpr int kNumDenseFraudFeatures = 18;
inline constexpr int kFraudHashBuckets = 4096;
inline constexpr int kNumFraudCrosses = 4;

// A scored order's features: dense values plus hashed categorical crosses
// (each a bucket with value 1).
struct FraudFeatures {
  std::array<double, kNumDenseFraudFeatures> dense{};
  std::array<uint32_t, kNumFraudCrosses> crosses{};
  bool operator==(const FraudFeatures&) const = default;
};

enum class FraudDecision { kApprove = 1, kReview = 2, kDecline = 3 };

struct FraudReason {
  std::string_view feature;  // readable name (static storage)
  double value = 0;
  double contribution = 0;  // weight x value, in log-odds
};

struct FraudScore {
  double probability = 0;
  FraudDecision decision = FraudDecision::kApprove;
  std::vector<FraudReason> reasons;
  FraudFeatures features;
  // True when the order was scored before and its stored features were used.
  bool rescored = false;
};

// Readable names of the dense features.
extern const char* const kFraudFeatureNames[kNumDenseFraudFeatures];

class FraudView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
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
  // The ORDER_SCORED event that records `order` scored with `features`.
  static Event RecordEvent(const FraudOrder& order, const FraudFeatures& features);

 private:
  friend class FraudModel;
  FraudFeatures Compute(const FraudOrder& order) const;
  double Logit(const FraudFeatures& f, std::vector<FraudReason>* reasons) const;

  FraudOptions options_;
  IdDictionaryView users_, cards_, devices_, orders_;
  RowBlockView<double> user_rows_, card_rows_, device_rows_, order_rows_;
  // Learned weights (dense, then hashed) and the FTRL state behind them.
  std::shared_ptr<const std::vector<double>> weights_, z_, n_;
  int64_t now_ms_ = 0;
  uint64_t labels_ = 0, unknown_labels_ = 0, matured_ = 0;
  uint64_t repeated_labels_ = 0, changed_labels_ = 0;
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
  void Train(uint32_t order_row, double label);
  // Trains the orders older than the maturity as legitimate.
  void Mature(int64_t now_ms);

  FraudOptions options_;
  IdDictionary users_, cards_, devices_, orders_;
  RowBlockMatrix<double> user_rows_, card_rows_, device_rows_, order_rows_;
  // FTRL state per coordinate, and the weights it gives.
  std::vector<double> z_, n_;
  double Weight(int i) const;
  // Published copies, replaced when training changed them.
  std::shared_ptr<const std::vector<double>> weights_, published_z_, published_n_;
  bool weights_stale_ = true;
  // Orders awaiting a label or maturity, oldest first (rebuilt from the
  // order rows on Decode).
  std::deque<uint32_t> pending_;
  int64_t now_ms_ = 0;
  uint64_t labels_ = 0, unknown_labels_ = 0, matured_ = 0;
  uint64_t repeated_labels_ = 0, changed_labels_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FRAUD_FRAUD_MODEL_H_
