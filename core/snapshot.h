// The versioned snapshot that serving reads, and the holder that publishes
// it. Readers take a shared_ptr for the length of a call (one atomic load,
// never blocked by the learner); the learner swaps in whole new snapshots.
#ifndef MERCATO_CORE_SNAPSHOT_H_
#define MERCATO_CORE_SNAPSHOT_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"

namespace mercato::core {

struct PublishedModel {
  std::string name;
  // Increases each time a changed model is published; starts at 1.
  uint64_t version = 0;
  // Wall time of that publication, ms since the epoch.
  int64_t published_at_ms = 0;
  std::shared_ptr<const ModelView> view;
  // The last event the model applied, and the events after it held back for
  // a background fit's adoption (Learner).
  uint64_t applied_sequence = 0;
  uint64_t waiting_events = 0;
  // Events the model applied since the learner started, and the learner
  // thread's time in its Apply and Publish, in nanoseconds.
  uint64_t applied_events = 0, apply_ns = 0;
};

struct Snapshot {
  // Increases with every publication.
  uint64_t version = 0;
  // Every event with sequence <= applied_sequence is folded in.
  uint64_t applied_sequence = 0;
  // Shop time after that event (Event::shop_time_ms).
  int64_t shop_time_ms = 0;
  // No model has a background fit running or events held back: the state is
  // a function of applied_sequence alone (Learner::settled_snapshot).
  bool settled = false;
  int64_t published_at_ms = 0;
  std::vector<PublishedModel> models;

  // The log position every model has applied: applied_sequence, or less
  // while a model's events are held back for a background fit.
  uint64_t served_sequence() const {
    uint64_t served = applied_sequence;
    for (const PublishedModel& m : models) served = std::min(served, m.applied_sequence);
    return served;
  }
  // Model `name`, or null when absent.
  const PublishedModel* Find(std::string_view name) const {
    for (const PublishedModel& m : models) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }
  // The view of model `name` as type V, or null when absent or of another type.
  template <class V>
  std::shared_ptr<const V> View(std::string_view name) const {
    const PublishedModel* m = Find(name);
    return m ? std::dynamic_pointer_cast<const V>(m->view) : nullptr;
  }
};

// Holds the current version of T. Thread-safe.
template <class T>
class SnapshotHolder {
 public:
  std::shared_ptr<const T> Get() const { return current_.load(std::memory_order_acquire); }
  void Publish(std::shared_ptr<const T> next) {
    current_.store(std::move(next), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const T>> current_;
};

}  // namespace mercato::core

#endif  // MERCATO_CORE_SNAPSHOT_H_
