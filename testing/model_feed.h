// Feeds one model by hand the way the learner feeds it: each event stamped
// with shop time first. For model tests that need no log.
#ifndef MERCATO_TESTING_MODEL_FEED_H_
#define MERCATO_TESTING_MODEL_FEED_H_

#include "core/event.h"
#include "core/model.h"
#include "core/shop_clock.h"

namespace mercato::testing {

// Not thread-safe; `model` must outlive the feed.
class ModelFeed {
 public:
  explicit ModelFeed(core::Model& model) : model_(model) {}
  // Model::Apply of `event` stamped with shop time.
  bool Apply(core::Event event) {
    clock_.Stamp(event);
    return model_.Apply(event);
  }
  int64_t now_ms() const { return clock_.now_ms(); }

 private:
  core::Model& model_;
  core::ShopClock clock_;
};

}  // namespace mercato::testing

#endif  // MERCATO_TESTING_MODEL_FEED_H_
