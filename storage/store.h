// The embedded database: the durable event log (with idempotency by
// event_id and group commit), the catalogue, and model checkpoints, each in
// its own RocksDB column family. The only place that includes RocksDB; the
// rest of the code sees core types and absl::Status.
//
// Thread-safe.
#ifndef MERCATO_STORAGE_STORE_H_
#define MERCATO_STORAGE_STORE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/event.h"
#include "core/learner.h"
#include "storage/log_writer.h"

namespace mercato::storage {

struct StoreOptions {
  // Folder of the database; created when missing.
  std::string path;
  // fsync every commit group before acknowledging it. Off only in tests of
  // things other than durability.
  bool sync = true;
  // Most events one commit group may take (a group always takes at least one
  // caller whole).
  size_t max_group_events = 100000;
};

// One entry of a shared log as a replica copies it into its store: the
// event, at its sequence, and for a catalogue upsert the item's row
// (EncodeItem; empty for every other event).
struct MirroredEntry {
  core::Event event;
  std::string item;
};

struct LoadedCheckpoint {
  uint64_t sequence = 0;
  int64_t written_at_ms = 0;
  // Model name -> encoded state.
  std::map<std::string, std::string> states;
};

// One audited call (server/gate.h). Kept apart from the event log: it is a
// record of who called this server, not an input of any model.
struct AuditRecord {
  // Position among this store's records, from 1; set by AppendAudit.
  uint64_t number = 0;
  int64_t time_ms = 0;
  // The token's or certificate's name in the access file.
  std::string who;
  // "/package.Service/Method".
  std::string method;
  // The request, as text, without anything identifying a customer.
  std::string request;
  // gRPC status code and message of the answer.
  int code = 0;
  std::string message;
};

struct StoreStats {
  uint64_t live_data_bytes = 0;
  uint64_t pending_compaction_bytes = 0;
};

class Store final : public LogWriter, public core::EventSource, public core::CheckpointSink {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store() override;

  // LogWriter. Idempotency keys are kept for as long as the log keeps their
  // events. Writes are synced when StoreOptions::sync.
  absl::StatusOr<AppendResult> Append(const std::vector<core::Event>& events,
                                      Durability durability = Durability::kSynced) override;
  absl::Status PutItems(const std::vector<core::Item>& items) override;
  absl::StatusOr<bool> DeleteItem(std::string_view item_id) override;

  // Writes `entries` of a shared log at their sequences, with what each
  // does to the catalogue (an upsert's row, an ITEM_DELETE's removal) and to
  // the pending erasures, in one write. Keeps no idempotency keys: the shared
  // log dedupes. FAILED_PRECONDITION when the first sequence does not follow
  // LastSequence() or the sequences are not consecutive. REQUIRES: no
  // Append runs on this store (it is a replica's).
  absl::Status Mirror(const std::vector<MirroredEntry>& entries);

  // core::EventSource
  uint64_t LastSequence() const override;
  absl::Status Read(uint64_t from, size_t max, std::vector<core::Event>* out) const override;
  void WaitForSequence(uint64_t after, absl::Duration timeout) const override;

  // The catalogue row of `item_id`; NOT_FOUND when absent.
  absl::StatusOr<core::Item> GetItem(std::string_view item_id) const;

  // core::CheckpointSink: one synced write of every state and the sequence.
  absl::Status WriteCheckpoint(
      uint64_t sequence,
      const std::vector<std::pair<std::string, std::string>>& states) override;
  // The newest checkpoint, or nullopt when none was ever written.
  absl::StatusOr<std::optional<LoadedCheckpoint>> ReadCheckpoint() const;

  // Keeps `record` (numbered next) in the write-ahead log, not fsynced;
  // the oldest beyond the newest kMaxAuditRecords are dropped.
  absl::StatusOr<uint64_t> AppendAudit(AuditRecord record);
  // Records numbered `from` on, at most `max`, oldest first.
  absl::Status ReadAudit(uint64_t from, size_t max, std::vector<AuditRecord>* out) const;
  static constexpr uint64_t kMaxAuditRecords = 1000000;

  // Erasures (server/erasure.h). Every USER_DELETE appended leaves a
  // marker, written with it, until CompleteErasures: the sequences of those
  // still pending, oldest first.
  absl::StatusOr<std::vector<uint64_t>> PendingErasures() const;
  // In one synced write: each of `rewritten` replaces the log entry at its
  // sequence, the idempotency keys `dropped_event_ids` go, the markers of
  // the erasures `completed` go, and a full compaction is due.
  absl::Status CompleteErasures(const std::vector<core::Event>& rewritten,
                                const std::vector<std::string>& dropped_event_ids,
                                const std::vector<uint64_t>& completed);
  // Whether a compaction CompleteErasures made due has not finished.
  bool CompactionDue() const;
  // Flushes the memtables (so that no write-ahead log file keeps the old
  // entries) and compacts every column family down to its last level, so
  // that no table file keeps a replaced or deleted value. Blocks; returns
  // its duration in seconds. The compaction stays due until
  // ClearCompactionDue.
  // CANCELLED when `*cancel` turns true (null: never).
  absl::StatusOr<double> CompactEverything(std::atomic<bool>* cancel = nullptr);
  absl::Status ClearCompactionDue();

  StoreStats Stats() const;

  // A consistent copy of the whole database in `folder` (which must not
  // exist; its parent must), opened by Store::Open like the original: table
  // files hard-linked where the file system allows. Returns the log end it
  // holds.
  absl::StatusOr<uint64_t> Backup(const std::string& folder);

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_STORE_H_
