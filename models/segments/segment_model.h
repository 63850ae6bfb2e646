// Customer segments and customer value.
//
// On every event the learner updates the customer's raw behaviour: first and
// last activity, orders, revenue, carts, refunds and the categories bought.
// From those, at any moment of event time, come the segment features:
// ln(1 + recency days), ln(1 + orders), ln(1 + average order value),
// ln(1 + tenure days), cart-abandon rate, refund rate and ln(1 + categories
// bought), standardised with the customers' mean and deviation.
//
// A refit (every `refit_every_purchases` purchases, on a background thread
// from a frozen copy of the rows) runs mini-batch k-means (Sculley 2010) with
// per-centroid counts, started by k-means++ on a reservoir sample the first
// time and from the previous centroids after that; matches the new centroids
// to the old ones so that segment ids stay stable; names each segment from
// its profile; and fits BG/NBD and Gamma-Gamma by maximum likelihood over
// every customer, within a budget of likelihood evaluations. Between refits a customer's segment
// is the nearest centroid to his current features.
//
// Threads: SegmentModel belongs to the learner thread (core/model.h); its
// refit runs on its own thread on a copy and shares nothing with it until
// adopted. SegmentView is immutable and thread-safe, and shares its row
// blocks and fit with the model and other views.
#ifndef MERCATO_MODELS_SEGMENTS_SEGMENT_MODEL_H_
#define MERCATO_MODELS_SEGMENTS_SEGMENT_MODEL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/background_fit.h"
#include "models/segments/customer_value.h"
#include "models/pricing/elasticity_model.h"
#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"

namespace mercato::core {

inline constexpr char kSegmentModelName[] = "segments";

struct SegmentOptions {
  // Number of segments.
  int k = 5;
  // Seed of the reservoir, the k-means++ start and the mini-batches.
  uint64_t seed = 42;
  // Customers kept in the reservoir sample that starts k-means++.
  int reservoir_size = 4096;
  // Mini-batch k-means: customers per batch and batches per refit.
  int batch_size = 1024;
  int iterations = 300;
  // The first fit waits for this many customers with a purchase ...
  int min_customers = 50;
  // ... and later ones come every this many purchase events (0 = only on
  // request).
  uint64_t refit_every_purchases = 20000;
  // Refit on a background thread; false runs it inline (tests, tools).
  bool background = true;
  // Likelihood evaluations allowed for each of the BG/NBD and Gamma-Gamma
  // fits.
  int value_fit_evaluations = 1000;
  // A refit's result is adopted at its FIT_DONE record, or this many log
  // events after it started if that comes first (core/background_fit.h).
  uint64_t adopt_after_events = 2000;
  // Customers the value models are fitted on, at most (a seeded sample).
  int value_fit_customers = 100000;
};

inline constexpr int kNumSegmentFeatures = 7;
// Names of the features, in order, for profiles.
extern const char* const kSegmentFeatureNames[kNumSegmentFeatures];

struct RfmValues {
  double recency_days = 0, frequency = 0, monetary = 0;
  int recency_score = 0, frequency_score = 0, monetary_score = 0;
};

struct SegmentProfileInfo {
  uint32_t id = 0;
  std::string label;
  uint64_t size = 0;
  // Means over the segment's customers, in natural units: recency days,
  // orders, average order value, tenure days, cart-abandon rate, refund rate,
  // categories bought.
  std::array<double, kNumSegmentFeatures> mean{};
};

// One refit's outcome. Immutable once published.
struct SegmentFit {
  uint64_t number = 0;  // 1 for the first fit
  int64_t fitted_at_ms = 0;  // event time of the data it saw
  std::array<double, kNumSegmentFeatures> mean{}, sd{};
  // k centroids in standardised feature space, with their stable ids.
  std::vector<std::array<double, kNumSegmentFeatures>> centroids;
  std::vector<SegmentProfileInfo> profiles;  // parallel to centroids
  // Quintile cut points of recency (days), frequency and monetary value.
  std::array<std::array<double, 4>, 3> quintiles{};
  BgNbdParams bg_nbd;          // time in days
  GammaGammaParams gamma_gamma;
  uint32_t next_id = 0;        // the id a new segment would get
  RetrainInfo run;             // when it ended and how long it took (not checkpointed)
};

struct CustomerSegment {
  uint32_t segment_id = 0;
  std::string label;
  double distance = 0;
  RfmValues rfm;
  double expected_purchases = 0;
  double probability_alive = 0;
  double expected_average_spend = 0;
  double customer_value = 0;
};

class SegmentView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  // NOT_FOUND for a user with no purchase; FAILED_PRECONDITION before the
  // first fit. `annual_discount_rate` discounts the horizon's value.
  absl::StatusOr<CustomerSegment> Segment(std::string_view user_id, int horizon_days,
                                          double annual_discount_rate) const;
  // Null before the first fit.
  const SegmentFit* fit() const { return fit_.get(); }
  std::optional<RetrainInfo> LastRetrain() const override;
  std::optional<RunningRetrain> Running() const override { return running_; }

 private:
  friend class SegmentModel;
  IdDictionaryView users_, items_;
  RowBlockView<double> user_rows_, item_rows_;
  std::shared_ptr<const SegmentFit> fit_;
  int64_t now_ms_ = 0;
  uint64_t customers_ = 0, purchases_since_fit_ = 0;
  std::vector<uint32_t> reservoir_;
  uint64_t users_seen_ = 0;
  std::optional<RunningRetrain> running_;  // the refit running at publication
};

class SegmentModel final : public Model, public SegmentLookup {
 public:
  explicit SegmentModel(SegmentOptions options = {});
  ~SegmentModel() override;
  SegmentModel(SegmentModel&&) = default;
  SegmentModel& operator=(SegmentModel&&) = default;

  std::string_view name() const override { return kSegmentModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;
  FitGate Gate(uint64_t sequence) override;
  std::optional<uint64_t> FinishedFit() const override { return fit_run_.Finished(); }
  void FitDoneAt(uint64_t started, uint64_t sequence) override {
    fit_run_.DoneAt(started, sequence);
  }
  bool CanRetrain() const override { return true; }
  // Starts a refit now (in the background when so configured).
  void Retrain() override;
  // A running refit ends early and is dropped; no other starts.
  void Abandon() override { fit_run_.Abandon(); }

  // SegmentLookup: the nearest segment to the customer's current behaviour.
  std::optional<uint32_t> SegmentOf(std::string_view user_id) const override;

  // Adopts the running refit, if any, then runs one inline and adopts it.
  // For tools and tests.
  void RefitNow();

 private:
  // Apply() once shop time is set; true when the event changed the rows.
  bool ApplyEvent(const Event& event);
  void MaybeRefit();
  // Starts a refit of the current rows (or runs it inline); adopted at
  // its gate.
  void StartRefit();
  void ApplyPurchase(const Event& event, double* row);

  SegmentOptions options_;
  IdDictionary users_, items_;
  RowBlockMatrix<double> user_rows_, item_rows_;
  IdDictionary categories_;
  std::shared_ptr<const SegmentFit> fit_;
  int64_t now_ms_ = 0;
  uint64_t customers_ = 0;
  uint64_t purchases_since_fit_ = 0;
  // Reservoir sample of user rows (Algorithm R over users as they appear).
  std::vector<uint32_t> reservoir_;
  uint64_t users_seen_ = 0;
  BackgroundFit<std::shared_ptr<const SegmentFit>> fit_run_;
  // The sequence of the last event given to Apply().
  uint64_t position_ = 0;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_SEGMENTS_SEGMENT_MODEL_H_
