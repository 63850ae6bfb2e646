// Feeds one model by hand the way the learner feeds it: each event numbered
// (when it has no sequence yet) and stamped with shop time, and given to the
// model only once its gate opens (a background fit due for adoption is
// waited for). For model tests that need no log.
#ifndef MERCATO_TESTING_MODEL_FEED_H_
#define MERCATO_TESTING_MODEL_FEED_H_

#include "absl/time/clock.h"
#include "core/event.h"
#include "core/model.h"
#include "core/shop_clock.h"

namespace mercato::testkit {

// Not thread-safe; `model` must outlive the feed.
class ModelFeed {
 public:
  explicit ModelFeed(core::Model& model) : model_(model) {}
  // Model::Apply of `event`, numbered, stamped and gated.
  bool Apply(core::Event event) {
    if (event.sequence == 0) event.sequence = next_sequence_;
    next_sequence_ = event.sequence + 1;
    clock_.Stamp(event);
    while (model_.Gate(event.sequence) == core::FitGate::kWait) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    return model_.Apply(event);
  }
  int64_t now_ms() const { return clock_.now_ms(); }

 private:
  core::Model& model_;
  core::ShopClock clock_;
  uint64_t next_sequence_ = 1;
};

}  // namespace mercato::testkit

#endif  // MERCATO_TESTING_MODEL_FEED_H_
