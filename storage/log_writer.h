// Where the server's writes go: the embedded store's own log (Store), or a
// Redis stream that several replicas share (RedisLog), which each replica
// copies into its store. Either way a write is acknowledged only once it is
// durable, and the models read it from the store's log.
#ifndef MERCATO_STORAGE_LOG_WRITER_H_
#define MERCATO_STORAGE_LOG_WRITER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/event.h"

namespace mercato::storage {

enum class Durability {
  // Durable before Append returns (fsynced, or accepted by Redis): survives
  // a power cut, given a Redis with `appendfsync always`.
  kSynced,
  // The embedded store: in the write-ahead log, not yet fsynced; survives
  // the process being killed, not a power cut. For records the server makes
  // itself. A Redis log treats it as kSynced.
  kProcessCrashSafe,
};

struct AppendResult {
  // Per input event: its new sequence number, or 0 when it was a duplicate.
  std::vector<uint64_t> sequences;
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  // A sequence at or past every event of this call, duplicates included
  // (what a read may wait for to see them).
  uint64_t last_sequence = 0;
};

// Thread-safe.
class LogWriter {
 public:
  virtual ~LogWriter() = default;
  // Appends `events`, durable when this returns OK. An event whose event_id
  // is already in the log (within the writer's idempotency window), or
  // earlier in this call, is a duplicate: acknowledged and not written. An
  // empty event_id is no idempotency key. Concurrent callers share one
  // write. The input events' `sequence` is ignored.
  virtual absl::StatusOr<AppendResult> Append(const std::vector<core::Event>& events,
                                              Durability durability = Durability::kSynced) = 0;
  // Upserts catalogue items: an ITEM_UPDATE per item enters the log with the
  // item's row, which the store's catalogue takes in the same write.
  virtual absl::Status PutItems(const std::vector<core::Item>& items) = 0;
  // An ITEM_DELETE enters the log and the row leaves the catalogue with it.
  // False when the catalogue had no such item (nothing is written then).
  virtual absl::StatusOr<bool> DeleteItem(std::string_view item_id) = 0;
};

// A catalogue upsert as the log carries it: per item its ITEM_UPDATE event
// and its catalogue row (storage/codec.h EncodeItem).
struct CatalogUpsert {
  std::vector<core::Event> events;
  std::vector<std::string> rows;
};
// The upsert of `items`, and the ITEM_DELETE of `item_id`, with event ids
// unique to this call in this process and among processes.
CatalogUpsert ItemUpserts(const std::vector<core::Item>& items);
core::Event ItemDeleteEvent(std::string_view item_id);

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_LOG_WRITER_H_
