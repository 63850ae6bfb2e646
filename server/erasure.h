// Erasure that leaves no trace. Admin.DeleteUser appends a USER_DELETE at
// sequence D, and every model forgets the customer there, renaming their
// row to core::ErasedName(D). The eraser then completes it, in the
// background and at log positions like everything else:
//   1. once D is applied, it reads the log before D for the identifiers the
//      customer's events carried (session ids, and what the models' own
//      records carry: payment fingerprints, device ids, address hashes) and
//      appends an ERASE_KEYS record at E naming them, at which every model
//      renames them to their placeholders;
//   2. once E is applied and a checkpoint at or past E is written, it
//      rewrites the log in one write: the customer's events before D name
//      the placeholder and lose their idempotency keys, and every event up
//      to E names the placeholders of those identifiers (E itself too);
//   3. it compacts the whole store, so that no file keeps the old bytes.
// A replay of the rewritten log gives the state the live models hold, bit
// for bit: the renames at D and E are then renames of a name to itself.
// Pending erasures are kept in the store and resumed after a restart.
//
// Thread-safe.
#ifndef MERCATO_SERVER_ERASURE_H_
#define MERCATO_SERVER_ERASURE_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/event.h"
#include "core/learner.h"
#include "storage/store.h"

namespace mercato::server {

// What an erasure renames: the customer, and the identifiers their events
// before `delete_sequence` carried, in order of first appearance.
struct ErasurePlan {
  uint64_t delete_sequence = 0;
  std::string user_id;
  std::vector<std::string> keys;
};

// Reads the USER_DELETE at `delete_sequence` and the log before it.
absl::StatusOr<ErasurePlan> PlanErasure(const core::EventSource& log, uint64_t delete_sequence);

// The log entries up to `keys_sequence` (the plan's ERASE_KEYS record) that
// the erasure changes, as they are to read from now on, and the
// idempotency keys that go with the customer's events.
struct ErasureRewrite {
  std::vector<core::Event> events;
  std::vector<std::string> dropped_event_ids;
};
absl::StatusOr<ErasureRewrite> RewriteForErasure(const core::EventSource& log,
                                                 const ErasurePlan& plan, uint64_t keys_sequence);

// The ERASE_KEYS record of `plan`.
core::Event EraseKeysEvent(const ErasurePlan& plan);

class Eraser {
 public:
  // ERASE_KEYS records go through `writer`; the rewrite is of `store`.
  Eraser(storage::Store* store, storage::LogWriter* writer, core::Learner* learner,
         core::Checkpointer* checkpointer);
  ~Eraser();  // Stop()
  void Start();
  // Abandons the erasure under way; the next start resumes it.
  void Stop();
  // An erasure was appended: look at once rather than at the next poll.
  void Notify();

 private:
  void Run();
  // Completes the erasure of the USER_DELETE at `d`; false when stopped.
  absl::StatusOr<bool> Complete(uint64_t d);
  // An audit record of the eraser's work.
  void Audit(std::string what, std::string outcome);
  // Waits until `done()` or the stop; false when stopped.
  bool WaitFor(const std::function<bool()>& done);

  storage::Store* store_;
  storage::LogWriter* writer_;
  core::Learner* learner_;
  core::Checkpointer* checkpointer_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> cancel_compaction_{false};
  std::thread thread_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_ERASURE_H_
