// A full iALS retrain of the recommendation model: trains a copy of the
// factor state as of the log position it starts at, on its own thread
// (core/background_fit.h), optionally with an HNSW index over the result.
// The interactions (and erasures) the model applies meanwhile are recorded
// here and replayed onto the result when it is adopted, so that the factors
// after any event depend only on the log, never on how long training took.
//
// Owned by the learner thread and not thread-safe, except Abandon(). The
// training thread works on its own copy and shares nothing with the model.
#ifndef MERCATO_MODELS_RECOMMEND_RETRAIN_RUN_H_
#define MERCATO_MODELS_RECOMMEND_RETRAIN_RUN_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/background_fit.h"
#include "core/model.h"
#include "models/recommend/hnsw_index.h"
#include "models/recommend/ials.h"
#include "models/recommend/ials_tuning.h"

namespace mercato::core {

// What a retrain gives: the trained state with the tail replayed, the
// index over it when one was asked for, the hyperparameter search when one
// ran (and could), and how long it ran.
struct TrainedFactors {
  IalsState state;
  std::shared_ptr<const HnswIndex> index;
  std::optional<IalsTuning> tuning;
  RetrainInfo run;
};

class RetrainRun {
 public:
  // Builds an index over a state; null when `stop` was set meanwhile.
  using IndexBuilder = std::function<std::shared_ptr<const HnswIndex>(
      const IalsState&, const std::atomic<bool>& stop)>;

  // Starts training a copy of `state` for `epochs` at log position
  // `position`, to be adopted `adopt_after` events later at the latest (see
  // BackgroundFit::Start); with `tune`, after a hyperparameter search
  // (ials_tuning.h) whose winner it trains with; `build_index` (may be
  // empty) indexes the result. REQUIRES: !running().
  void Start(uint64_t position, const IalsState& state, int epochs, uint64_t adopt_after,
             bool background, std::optional<IalsTuningOptions> tune, IndexBuilder build_index);
  bool running() const { return fit_.running(); }

  // What the model applies while a retrain runs, replayed onto its result;
  // nothing when none runs.
  void Observe(uint32_t user, uint32_t item, EventType type, int64_t t_ms);
  void Forget(uint32_t user);
  void SetItemFeatures(uint32_t item, const ItemFeatures& features);

  // BackgroundFit::Gate, with `adopt` given the result, tail replayed.
  FitGate Gate(uint64_t sequence, const std::function<void(TrainedFactors)>& adopt);
  // Adopts the running retrain now, waiting for it (no-op when none runs).
  void Finish(const std::function<void(TrainedFactors)>& adopt);
  std::optional<uint64_t> Finished() const { return fit_.Finished(); }
  void DoneAt(uint64_t started, uint64_t sequence) { fit_.DoneAt(started, sequence); }
  const std::optional<RunningRetrain>& status() const { return fit_.status(); }
  void Abandon() { fit_.Abandon(); }
  // Back to idle, dropping any retrain (waits for its thread first).
  void Reset();

 private:
  // One call of IalsState::Observe, ForgetUser or SetItemFeatures.
  struct Observation {
    enum Kind : uint8_t { kObserve, kForget, kFeatures } kind;
    uint32_t user, item;
    EventType type;
    int64_t t_ms;
    ItemFeatures features;
  };
  std::function<void(TrainedFactors)> Replaying(const std::function<void(TrainedFactors)>& adopt);

  std::vector<Observation> tail_;
  BackgroundFit<TrainedFactors> fit_;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_RECOMMEND_RETRAIN_RUN_H_
