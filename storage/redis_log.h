// The event log shared by replicas: a Redis stream. Every write of every
// replica is appended to it by one Lua script per commit group, which
// dedupes by event_id (keys that expire after the idempotency window) and
// numbers the entries 1, 2, 3... as stream ids 0-1, 0-2, ..., so a
// sequence is the same on every replica. Each replica's mirror thread reads
// the stream in order from its store's log end and copies it into the store
// (Store::Mirror), from which its learner reads as it does without Redis.
//
// The mirror also records this replica's position in the hash
// <stream>:replicas (its newest checkpoint, its log end, Redis's time) and
// trims the stream below the oldest checkpoint of the replicas heard from
// within `replica_timeout`, keeping at least the newest `retain_events`.
//
// Redis being down fails writes with UNAVAILABLE (never acknowledged) and
// stops the mirror, which reconnects with backoff and goes on from its
// position; what the store holds keeps being served.
//
// The only place besides store.cc that sees a storage client library.
// Thread-safe.
#ifndef MERCATO_STORAGE_REDIS_LOG_H_
#define MERCATO_STORAGE_REDIS_LOG_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/log_writer.h"
#include "storage/store.h"

namespace mercato::storage {

struct RedisLogOptions {
  std::string host;
  int port = 6379;
  // Sent with AUTH when not empty.
  std::string password;
  // The stream's key; its companions are <stream>:id:<event_id> (the
  // idempotency keys) and <stream>:replicas.
  std::string stream;
  // How long an event_id is remembered: a repeat within it is a duplicate.
  absl::Duration dedup_window = absl::Hours(24);
  // With Redis replicas: each write waits (WAIT) until this many have it,
  // at most `wait_timeout`; fewer is UNAVAILABLE (a retry is deduped).
  int wait_replicas = 0;
  absl::Duration wait_timeout = absl::Seconds(1);
  // This replica's name among <stream>:replicas; unique per data folder.
  std::string replica_name;
  // A replica not heard from for this long no longer holds trimming back.
  absl::Duration replica_timeout = absl::Hours(1);
  // The newest entries trimming always keeps.
  uint64_t retain_events = 1000000;
  // How often the position is recorded and the stream trimmed.
  absl::Duration position_interval = absl::Seconds(5);
  // Each round trip's limit.
  absl::Duration io_timeout = absl::Seconds(2);
  // Most events one commit group takes (it always takes one caller whole).
  size_t max_group_events = 20000;
};

// Parses `redis://[:PASSWORD@]HOST:PORT/STREAM`; INVALID_ARGUMENT naming
// `flag` and what is wrong.
absl::StatusOr<RedisLogOptions> ParseRedisUrl(std::string_view url, std::string_view flag);

class RedisLog final : public LogWriter {
 public:
  // Connects lazily: Redis may be down at start. `store` (not owned) is the
  // replica's; it must outlive this.
  RedisLog(RedisLogOptions options, Store* store);
  ~RedisLog() override;

  // LogWriter. DeleteItem consults the store's catalogue.
  absl::StatusOr<AppendResult> Append(const std::vector<core::Event>& events,
                                      Durability durability = Durability::kSynced) override;
  absl::Status PutItems(const std::vector<core::Item>& items) override;
  absl::StatusOr<bool> DeleteItem(std::string_view item_id) override;

  // Starts the mirror thread. `checkpoint_sequence` tells the newest
  // checkpoint's sequence, for the recorded position.
  void Start(std::function<uint64_t()> checkpoint_sequence);
  void Stop();

  // The highest sequence known to be in the stream: at or past the store's
  // log end once the mirror has heard from Redis.
  uint64_t head() const { return head_.load(); }
  // Whether the mirror's last round trip reached Redis.
  bool connected() const { return connected_.load(); }
  // What stops the mirror now (a gap in the stream, a stream behind this
  // replica's log, Redis unreachable), OK when nothing.
  absl::Status mirror_status() const;

 private:
  struct Impl;
  // head() becomes at least `sequence`.
  void RaiseHead(uint64_t sequence) {
    uint64_t known = head_.load();
    while (known < sequence && !head_.compare_exchange_weak(known, sequence)) {
    }
  }
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> head_{0};
  std::atomic<bool> connected_{false};
};

}  // namespace mercato::storage

#endif  // MERCATO_STORAGE_REDIS_LOG_H_
