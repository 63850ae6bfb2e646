// The versioned snapshot that serving reads, and the holder that publishes
// it. Readers take a shared_ptr for the length of a call (one atomic load,
// never blocked by the learner); the learner swaps in whole new snapshots.
#ifndef MERCATO_CORE_SNAPSHOT_H_
#define MERCATO_CORE_SNAPSHOT_H_

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
};

struct Snapshot {
  // Increases with every publication.
  uint64_t version = 0;
  // Every event with sequence <= applied_sequence is folded in.
  uint64_t applied_sequence = 0;
  // Shop time after that event (Event::shop_time_ms).
  int64_t shop_time_ms = 0;
  int64_t published_at_ms = 0;
  std::vector<PublishedModel> models;

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
