// Shared helpers for the command-line clients: channels, deadlines, load
// loops and latency statistics. Clients see only the public API.
#ifndef MERCATO_CLIENTS_CLIENT_UTIL_H_
#define MERCATO_CLIENTS_CLIENT_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "testing/demo_shop.h"
#include "mercato/v1/catalog.pb.h"
#include "mercato/v1/ingest.pb.h"

namespace mercato::clients {

// How a channel proves itself: TLS with the CA (PEM) the server's
// certificate must chain to (no CA = plaintext), for mutual TLS the client's
// certificate chain and key, and a bearer token sent with every call
// (empty = none).
struct ClientAuth {
  std::string ca_file, cert_file, key_file;
  std::string token;
};

// From the clients' --tls_ca_file, --tls_cert_file, --tls_key_file and
// --auth_token_file, or the token in $MERCATO_TOKEN.
ClientAuth ClientAuthFromFlags();

// A channel with message limits matching the server's; exits naming the
// file when one of `auth` cannot be read. `target` may list replicas,
// "host:port,host:port,...": calls then go round robin to those whose
// grpc.health reports SERVING.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const ClientAuth& auth = {});

// Waits until the channel is connected; false after `timeout`.
bool WaitForReady(grpc::Channel& channel, std::chrono::milliseconds timeout);

v1::Event ToProto(const core::Event& e);
v1::Item ToProto(const core::Item& item);

// Upserts `items` in UpsertItems calls of `batch` items; returns how many
// were upserted, or the first error.
absl::StatusOr<uint64_t> UpsertItems(grpc::Channel& channel, const std::vector<v1::Item>& items,
                                     int batch);
// Publishes `events` in PublishBatch calls of `batch` events, in order, and
// adds the outcome to `summary`; stops at the first error.
absl::Status PublishEvents(grpc::Channel& channel, const std::vector<v1::Event>& events, int batch,
                           v1::PublishSummary* summary);

// Upserts the demo shop's catalogue, then publishes its events in batches of
// `batch`; adds the outcome to `summary`.
absl::Status LoadDemoShop(grpc::Channel& channel, const core::DemoShop& shop, int batch,
                          v1::PublishSummary* summary);

// A client context whose deadline is `seconds` from now.
std::unique_ptr<grpc::ClientContext> Deadline(int seconds);

// For command-line tools: prints "what: error" and exits 1 unless ok.
void CheckOrExit(const grpc::Status& status, const char* what);
void CheckOrExit(const absl::Status& status, const char* what);

// Waits until the learner has applied every logged event (no lag).
absl::Status WaitApplied(grpc::Channel& channel);

// The count `name` that model `model` reports in Admin.ModelStatus (0 when
// absent).
absl::StatusOr<uint64_t> ModelCount(grpc::Channel& channel, const std::string& model,
                                    const std::string& name);

// Asks for a retrain of the recommendation model and waits until a retrain
// result is adopted (the model's "retrains" count moves). With automatic
// retrains on, that may be one already running when it was asked.
absl::Status RetrainRecommendations(grpc::Channel& channel);

// Latency summary of a load run. Latencies are in microseconds.
struct LoadResult {
  uint64_t calls = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double qps = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0;
  std::string first_error;
  // Calls answered OK (so within their deadline), per second, and the
  // percentiles of their latencies.
  double goodput = 0;
  double ok_p50_us = 0, ok_p99_us = 0;
};

// Sorts `latencies_us` and fills the percentiles of `result`.
void FillPercentiles(std::vector<double>& latencies_us, LoadResult& result);

// Tallies one call of a load (latency from its send or intended send).
class LoadTally {
 public:
  void Add(const grpc::Status& status, bool ok, double latency_us) {
    ++result_.calls;
    if (!ok || !status.ok()) {
      if (result_.errors++ == 0) result_.first_error = status.error_message();
    } else {
      ok_latencies_.push_back(latency_us);
    }
    latencies_.push_back(latency_us);
  }
  LoadResult Finish(double seconds) {
    result_.seconds = seconds;
    result_.qps = result_.calls / seconds;
    result_.goodput = ok_latencies_.size() / seconds;
    FillPercentiles(latencies_, result_);
    LoadResult ok;
    FillPercentiles(ok_latencies_, ok);
    result_.ok_p50_us = ok.p50_us;
    result_.ok_p99_us = ok.p99_us;
    return result_;
  }

 private:
  LoadResult result_;
  std::vector<double> latencies_, ok_latencies_;
};

std::string FormatLoadResult(absl::string_view name, const LoadResult& r);

// Starts call number i of a load on `cq` with `ctx`, and returns its reader;
// the load loop finishes it.
template <class Resp>
using StartCallFn = std::function<std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>>(
    uint64_t, grpc::ClientContext*, grpc::CompletionQueue*)>;

// Closed-loop load: keeps `in_flight` calls outstanding for `seconds` from
// one completion-queue thread, each with `deadline`. `start(i, ctx, cq)`
// starts call number i.
template <class Resp>
LoadResult RunClosedLoop(int in_flight, double seconds, std::chrono::milliseconds deadline,
                         StartCallFn<Resp> start) {
  using Clock = std::chrono::steady_clock;
  struct Slot {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>> reader;
    Resp response;
    grpc::Status status;
    Clock::time_point sent;
  };
  grpc::CompletionQueue cq;
  std::vector<Slot> slots(in_flight);
  uint64_t next = 0;
  auto launch = [&](Slot& s) {
    s.ctx = std::make_unique<grpc::ClientContext>();
    s.ctx->set_deadline(std::chrono::system_clock::now() + deadline);
    s.sent = Clock::now();
    s.reader = start(next++, s.ctx.get(), &cq);
    s.reader->Finish(&s.response, &s.status, &s);
  };
  LoadTally tally;
  const auto begin = Clock::now();
  const auto end = begin + std::chrono::duration<double>(seconds);
  for (Slot& s : slots) launch(s);
  int outstanding = in_flight;
  void* tag;
  bool ok;
  while (outstanding > 0 && cq.Next(&tag, &ok)) {
    Slot& s = *static_cast<Slot*>(tag);
    const auto now = Clock::now();
    tally.Add(s.status, ok, std::chrono::duration<double, std::micro>(now - s.sent).count());
    if (now < end) {
      launch(s);
    } else {
      --outstanding;
    }
  }
  return tally.Finish(std::chrono::duration<double>(Clock::now() - begin).count());
}

// Open-loop load: starts call number i at its intended time begin + i / rate
// for `seconds`, whether or not earlier calls have finished, and measures
// each latency from that intended time, so a server (or client) that falls
// behind shows as queueing rather than as fewer calls. Each call has
// `deadline` from its intended time. One thread sends, another drains the
// completion queue.
template <class Resp>
LoadResult RunOpenLoop(double rate, double seconds, std::chrono::milliseconds deadline,
                       StartCallFn<Resp> start) {
  using Clock = std::chrono::steady_clock;
  struct Call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>> reader;
    Resp response;
    grpc::Status status;
    Clock::time_point intended;
  };
  grpc::CompletionQueue cq;
  const uint64_t total = static_cast<uint64_t>(rate * seconds);
  LoadTally tally;
  const auto begin = Clock::now();
  const auto system_begin = std::chrono::system_clock::now();
  std::thread drain([&] {
    void* tag;
    bool ok;
    for (uint64_t done = 0; done < total && cq.Next(&tag, &ok); ++done) {
      std::unique_ptr<Call> call(static_cast<Call*>(tag));
      tally.Add(call->status, ok,
                std::chrono::duration<double, std::micro>(Clock::now() - call->intended).count());
    }
  });
  for (uint64_t i = 0; i < total; ++i) {
    auto call = std::make_unique<Call>();
    const auto offset = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(i) / rate));
    call->intended = begin + offset;
    std::this_thread::sleep_until(call->intended);
    call->ctx.set_deadline(system_begin + offset + deadline);
    call->reader = start(i, &call->ctx, &cq);
    Call* tag = call.release();
    tag->reader->Finish(&tag->response, &tag->status, tag);
  }
  drain.join();
  cq.Shutdown();
  return tally.Finish(std::chrono::duration<double>(Clock::now() - begin).count());
}

}  // namespace mercato::clients

#endif  // MERCATO_CLIENTS_CLIENT_UTIL_H_
