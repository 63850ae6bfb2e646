// The shape every model follows, so that one learner, one publication
// mechanism and one checkpoint format serve all of them:
//   - the Model holds plain mutable state, owned by the learner thread;
//   - Apply(event) is the learner step, called in log order;
//   - Publish() freezes the state into an immutable ModelView for serving;
//   - ModelView::Encode() and Model::Decode() are the checkpoint pair.
// The rule every model keeps: its encoded state after an event is a
// function of the log up to that event alone (and its options), whatever
// the thread timing and wherever the process restarted. Shop time comes
// from Event::shop_time_ms, background fits go through BackgroundFit, and
// Apply returns true whenever anything Encode() writes changed, so that a
// view published later never shows state an earlier publication missed.
#ifndef MERCATO_CORE_MODEL_H_
#define MERCATO_CORE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/event.h"

namespace mercato::core {

// A full retrain (or refit) a model adopted, for status and metrics.
struct RetrainInfo {
  int64_t finished_ms = 0;  // wall clock, ms since the epoch
  double seconds = 0;       // how long it ran
};

// A retrain (or refit) running in the background, or finished and not yet
// adopted, for status.
struct RunningRetrain {
  int64_t started_ms = 0;         // wall clock, ms since the epoch
  uint64_t started_sequence = 0;  // the log position it started at
};

// One trial of a model's hyperparameter search, for status.
struct FitTrial {
  std::vector<std::pair<std::string, double>> parameters, metrics;
  bool adopted = false;
};

// A measure a model exports to Prometheus as a gauge of a family of its own.
struct MetricSample {
  std::string family;  // e.g. "mercato_experiment_answers"
  std::string help;    // the same for every sample of a family
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
};

// What the learner may do with a model's next event (Model::Gate).
enum class FitGate {
  kOpen,     // apply it
  kAdopted,  // a background fit's result was adopted just before it: apply it
  kWait,     // a fit must be adopted first and has not finished: hold it back
};

// An immutable published version of one model. Thread-safe: const only.
class ModelView {
 public:
  virtual ~ModelView() = default;
  // The model state this view shows, in the model's own versioned layout.
  virtual std::string Encode() const = 0;
  // Named sizes for status reports, e.g. {"users", 120}.
  virtual std::vector<std::pair<std::string, uint64_t>> Counts() const = 0;
  // Named measures for status reports that are not counts, e.g.
  // {"brier_score", 0.04}.
  virtual std::vector<std::pair<std::string, double>> Gauges() const { return {}; }
  // The last retrain this process adopted (not checkpointed); none for
  // models without retrains.
  virtual std::optional<RetrainInfo> LastRetrain() const { return std::nullopt; }
  // The retrain running when this view was published; none when idle.
  virtual std::optional<RunningRetrain> Running() const { return std::nullopt; }
  // The trials of the hyperparameter search behind the configuration in
  // use; none when no search chose it.
  virtual std::vector<FitTrial> Trials() const { return {}; }
  // The samples of the model's own metric families, read at scrape time.
  virtual std::vector<MetricSample> Samples() const { return {}; }
  // What an accepted `event` is worth telling its sender, given this view
  // (the state the event arrives at); empty when nothing. Ingest lists
  // these notes in its answer.
  virtual std::string Note(const Event& event) const { return ""; }
};

// Mutable model state. Not thread-safe: only the learner thread calls it.
class Model {
 public:
  virtual ~Model() = default;
  // Stable name; also the checkpoint key.
  virtual std::string_view name() const = 0;
  // Folds one event in, in log order, stamped with shop time. Returns false
  // only when nothing the model encodes changed.
  virtual bool Apply(const Event& event) = 0;
  // Freezes the current state. Cheap: shares unchanged data with earlier views.
  virtual std::shared_ptr<const ModelView> Publish() = 0;
  // Replaces the whole state with one encoded by ModelView::Encode().
  // On error the state is unchanged.
  virtual absl::Status Decode(std::string_view bytes) = 0;
  // Before each event (core/background_fit.h): a model with a background
  // fit adopts its result when the event is at or past the fit's adoption
  // point and the fit has finished (kAdopted), or asks the learner to hold
  // the event back, with every later one, until it has (kWait).
  virtual FitGate Gate(uint64_t sequence) { return FitGate::kOpen; }
  // The started sequence of a background fit that has finished and waits
  // for its FIT_DONE record; none otherwise. Never blocks.
  virtual std::optional<uint64_t> FinishedFit() const { return std::nullopt; }
  // A FIT_DONE record at `sequence` for the fit that started at `started`:
  // that fit is adopted before the event at `sequence`, if not earlier.
  virtual void FitDoneAt(uint64_t started, uint64_t sequence) {}
  // An event the learner holds back: folded into what the model serves
  // meanwhile, never into its state, and dropped when Gate adopts a fit (the
  // learner previews the events still held back again then). True when what
  // it serves changed.
  virtual bool Preview(const Event& event) { return false; }
  // Called between batches and when idle: adopts caches the model built on
  // its own (an index over restored factors). True when what it serves
  // changed.
  virtual bool Poll() { return false; }
  // Whether Retrain() does anything.
  virtual bool CanRetrain() const { return false; }
  // Starts a background fit now, at the position of the last event applied
  // (a RETRAIN event); none when one runs already.
  virtual void Retrain() {}
  // Abandons background work for good, at shutdown: a running retrain ends
  // early and is dropped, and none starts after. Any thread may call it.
  virtual void Abandon() {}
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_MODEL_H_
