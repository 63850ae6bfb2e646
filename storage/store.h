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

struct AppendResult {
  // Per input event: its new sequence number, or 0 when it was a duplicate.
  std::vector<uint64_t> sequences;
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  // The highest durable sequence number after this append.
  uint64_t last_sequence = 0;
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

class Store final : public core::EventSource, public core::CheckpointSink {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store() override;

  enum class Durability {
    // fsynced before Append returns (when StoreOptions::sync): survives a
    // power cut.
    kSynced,
    // In the write-ahead log, not yet fsynced: survives the process being
    // killed, not a power cut. For records the server makes itself.
    kProcessCrashSafe,
  };

  // Appends `events` to the log, durable when this returns OK. An event whose
  // event_id is already in the log, or earlier in this call, is a duplicate:
  // acknowledged and not written. An empty event_id (only the server's own
  // records have one) is no idempotency key. Concurrent callers share one write, synced
  // when any of them asks for it. The input events' `sequence` is ignored.
  absl::StatusOr<AppendResult> Append(const std::vector<core::Event>& events,
                                      Durability durability = Durability::kSynced);

  // core::EventSource
  uint64_t LastSequence() const override;
  absl::Status Read(uint64_t from, size_t max, std::vector<core::Event>* out) const override;
  void WaitForSequence(uint64_t after, absl::Duration timeout) const override;

  // Catalogue. Writes are synced. PutItems also appends an ITEM_UPDATE event
  // per item to the log, in the same atomic write, so models see catalogue
  // changes in log order.
  absl::Status PutItems(const std::vector<core::Item>& items);
  // NOT_FOUND when absent.
  absl::StatusOr<core::Item> GetItem(std::string_view item_id) const;
  // Returns false when there was no such item.
  absl::StatusOr<bool> DeleteItem(std::string_view item_id);

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

 private:
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_STORE_H_
