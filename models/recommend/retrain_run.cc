#include "models/recommend/retrain_run.h"

#include <utility>

#include "absl/time/clock.h"

namespace mercato::core {

void RetrainRun::Start(uint64_t position, const IalsState& state, int epochs, uint64_t adopt_after,
                       bool background, std::optional<IalsTuningOptions> tune,
                       IndexBuilder build_index) {
  tail_.clear();
  fit_.Start(position, adopt_after, background,
             [state = IalsState(state), epochs, tune, build = std::move(build_index)](
                 const std::atomic<bool>& stop) mutable -> std::optional<TrainedFactors> {
               const absl::Time start = absl::Now();
               std::optional<IalsTuning> tuning;
               if (tune) {
                 tuning = TuneIals(state, *tune, epochs, stop);
                 if (stop.load()) return std::nullopt;
                 // A new configuration trains from a fresh start, as its trial did.
                 if (tuning && tuning->winner != 0) {
                   state = state.Restarted(state.options().With(tuning->adopted().hyperparameters),
                                           [](uint32_t, const Interaction&) { return true; });
                 }
               }
               if (!state.Train(epochs, &stop)) return std::nullopt;
               std::shared_ptr<const HnswIndex> index = build ? build(state, stop) : nullptr;
               if (build && !index) return std::nullopt;
               const absl::Time end = absl::Now();
               return TrainedFactors{std::move(state),
                                     std::move(index),
                                     std::move(tuning),
                                     {absl::ToUnixMillis(end), absl::ToDoubleSeconds(end - start)}};
             });
}

void RetrainRun::Observe(uint32_t user, uint32_t item, EventType type, int64_t t_ms) {
  if (running()) tail_.push_back({Observation::kObserve, user, item, type, t_ms, {}});
}

void RetrainRun::Forget(uint32_t user) {
  if (running()) tail_.push_back({Observation::kForget, user, 0, {}, 0, {}});
}

void RetrainRun::SetItemFeatures(uint32_t item, const ItemFeatures& features) {
  if (running()) tail_.push_back({Observation::kFeatures, 0, item, {}, 0, features});
}

std::function<void(TrainedFactors)> RetrainRun::Replaying(
    const std::function<void(TrainedFactors)>& adopt) {
  return [this, &adopt](TrainedFactors trained) {
    for (const Observation& o : tail_) {
      switch (o.kind) {
        case Observation::kObserve:
          trained.state.Observe(o.user, o.item, o.type, o.t_ms);
          break;
        case Observation::kForget:
          trained.state.ForgetUser(o.user);
          break;
        case Observation::kFeatures:
          trained.state.SetItemFeatures(o.item, o.features);
          break;
      }
    }
    tail_.clear();
    adopt(std::move(trained));
  };
}

FitGate RetrainRun::Gate(uint64_t sequence, const std::function<void(TrainedFactors)>& adopt) {
  return fit_.Gate(sequence, Replaying(adopt));
}

void RetrainRun::Finish(const std::function<void(TrainedFactors)>& adopt) {
  fit_.Finish(Replaying(adopt));
}

void RetrainRun::Reset() {
  fit_ = {};
  tail_.clear();
}

}  // namespace mercato::core
