// Read your writes: a read RPC may carry the metadata `mercato-min-sequence`
// (a sequence from an Ingest, Catalog or Admin answer). The call is served
// once the published snapshot has folded that far in, which on a replica
// may be after the call arrives; it waits for that on the barrier's thread,
// not the serving one, and gets UNAVAILABLE, never a stale answer, when its
// deadline comes first. Calls without it are served at once.
//
// Thread-safe.
#ifndef MERCATO_SERVER_READ_BARRIER_H_
#define MERCATO_SERVER_READ_BARRIER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mercato::server {

inline constexpr char kMinSequenceMetadata[] = "mercato-min-sequence";

class ReadBarrier {
 public:
  // A call without a deadline waits at most this long.
  static constexpr absl::Duration kLongestWait = absl::Seconds(30);

  // `applied` tells the sequence the published snapshot has folded in.
  explicit ReadBarrier(std::function<uint64_t()> applied);
  // Answers every waiting call UNAVAILABLE.
  ~ReadBarrier();

  // The sequence `ctx` asks for, 0 when none; INVALID_ARGUMENT naming the
  // metadata when it is no number.
  static absl::StatusOr<uint64_t> MinSequence(const grpc::ServerContext& ctx);

  bool Reached(uint64_t sequence) const { return applied_() >= sequence; }

  // Calls `resume` on the barrier's thread with OK once `sequence` is
  // applied, or UNAVAILABLE once `ctx`'s deadline (at most kLongestWait) is
  // near: a fifth of the wait before it, 2 to 50 ms, so the answer arrives.
  void Park(uint64_t sequence, const grpc::ServerContext& ctx,
            std::function<void(grpc::Status)> resume);

 private:
  struct Parked {
    uint64_t sequence;
    absl::Time give_up;
    std::function<void(grpc::Status)> resume;
  };
  void Run();

  const std::function<uint64_t()> applied_;
  absl::Mutex mu_;
  std::vector<Parked> parked_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_READ_BARRIER_H_
