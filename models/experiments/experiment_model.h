// Online evaluation of recommendations: per experiment arm and answer
// source, the Recommend answers served (from the server's
// RECOMMENDATIONS_SERVED records) and the shopper events that carry one of
// their recommendation ids (core/recommendation_ref.h) within the
// attribution window after that answer was served, in event time: clicks
// (views and clicks), carts, purchases and the revenue of those purchases.
// Events outside the window count as late and nowhere else. A pure function
// of the log: replicas and restarts agree, and every replica's answers count.
//
// Threads: ExperimentModel belongs to the learner thread; ExperimentView is
// immutable.
#ifndef MERCATO_MODELS_EXPERIMENTS_EXPERIMENT_MODEL_H_
#define MERCATO_MODELS_EXPERIMENTS_EXPERIMENT_MODEL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/model.h"

namespace mercato::core {

inline constexpr char kExperimentModelName[] = "experiments";

struct ExperimentOptions {
  // An event counts for an answer served at most this long before it.
  int64_t attribution_window_ms = int64_t{24} * 3600 * 1000;
};

// What followed the answers of one arm and source.
struct ArmOutcome {
  uint64_t answers = 0, clicks = 0, carts = 0, purchases = 0, late = 0;
  double revenue = 0;
  bool operator==(const ArmOutcome&) const = default;
};

// (arm, source) -> outcome, sorted.
using ArmOutcomes = std::map<std::pair<std::string, int>, ArmOutcome>;

class ExperimentView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  std::vector<MetricSample> Samples() const override;
  const ArmOutcomes& outcomes() const { return *outcomes_; }
  int64_t attribution_window_ms() const { return options_.attribution_window_ms; }

 private:
  friend class ExperimentModel;
  ExperimentOptions options_;
  std::shared_ptr<const ArmOutcomes> outcomes_;
};

class ExperimentModel final : public Model {
 public:
  explicit ExperimentModel(ExperimentOptions options = {}) : options_(options) {}
  std::string_view name() const override { return kExperimentModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;

 private:
  ExperimentOptions options_;
  ArmOutcomes outcomes_;
  std::shared_ptr<const ArmOutcomes> published_;  // null once outcomes_ changed
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_EXPERIMENTS_EXPERIMENT_MODEL_H_
