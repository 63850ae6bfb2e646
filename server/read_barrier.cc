#include "server/read_barrier.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mercato::server {
namespace {

// How often waiting calls look at the snapshot again.
constexpr absl::Duration kPoll = absl::Milliseconds(1);
// Given up a fifth of the wait before the deadline, within these bounds, so
// that the answer still arrives when the machine is busy.
constexpr absl::Duration kMinAnswerTime = absl::Milliseconds(2);
constexpr absl::Duration kMaxAnswerTime = absl::Milliseconds(50);

grpc::Status NotApplied(uint64_t sequence, uint64_t applied) {
  return grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat(kMinSequenceMetadata, ": sequence ", sequence,
                   " is not applied on this replica within the call's deadline (applied: ", applied,
                   "); retry, or ask another replica"));
}

}  // namespace

ReadBarrier::ReadBarrier(std::function<uint64_t()> applied)
    : applied_(std::move(applied)), thread_([this] { Run(); }) {}

ReadBarrier::~ReadBarrier() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

absl::StatusOr<uint64_t> ReadBarrier::MinSequence(const grpc::ServerContext& ctx) {
  const auto& metadata = ctx.client_metadata();
  const auto it = metadata.find(kMinSequenceMetadata);
  if (it == metadata.end()) return 0;
  uint64_t sequence = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &sequence)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kMinSequenceMetadata, ": '",
                     absl::string_view(it->second.data(), std::min<size_t>(it->second.size(), 40)),
                     "' is no sequence number"));
  }
  return sequence;
}

void ReadBarrier::Park(uint64_t sequence, const grpc::ServerContext& ctx,
                       std::function<void(grpc::Status)> resume) {
  const absl::Time now = absl::Now();
  const absl::Time end = std::min(absl::FromChrono(ctx.deadline()), now + kLongestWait);
  const absl::Time give_up = end - std::clamp((end - now) / 5, kMinAnswerTime, kMaxAnswerTime);
  absl::MutexLock lock(&mu_);
  parked_.push_back({sequence, give_up, std::move(resume)});
}

void ReadBarrier::Run() {
  for (;;) {
    std::vector<std::pair<std::function<void(grpc::Status)>, grpc::Status>> due;
    bool stop;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !parked_.empty(); };
      mu_.Await(absl::Condition(&work));
      stop = stop_;
      const uint64_t applied = applied_();
      const absl::Time now = absl::Now();
      std::erase_if(parked_, [&](Parked& p) {
        if (applied >= p.sequence) {
          due.emplace_back(std::move(p.resume), grpc::Status::OK);
        } else if (stop || now >= p.give_up) {
          due.emplace_back(std::move(p.resume), NotApplied(p.sequence, applied));
        } else {
          return false;
        }
        return true;
      });
    }
    for (auto& [resume, status] : due) resume(status);
    if (stop) return;
    absl::SleepFor(kPoll);
  }
}

}  // namespace mercato::server
