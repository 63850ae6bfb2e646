// Prometheus metrics on their own port (prometheus-cpp pull exposer):
//   - per RPC, from one server interceptor or, for the completion-queue
//     methods, their call objects: grpc_server_started_total,
//     grpc_server_handled_total{grpc_code} and the grpc_server_handling_seconds
//     histogram, labelled grpc_service and grpc_method;
//   - events ingested, duplicate and rejected; the modules' own counters
//     (Metrics::AddCounter);
//   - read at scrape time from the runtime: learner lag, each model's version
//     and age, snapshot publish, checkpoint and retrain durations, checkpoint
//     age, RocksDB size and pending compaction.
// Thread-safe.
#ifndef MERCATO_SERVER_METRICS_H_
#define MERCATO_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/async_unary.h"
#include "server/gate.h"
#include "server/runtime.h"

namespace prometheus {
class Counter;
}  // namespace prometheus

namespace mercato::server {

class Metrics {
 public:
  // Serves /metrics on `listen` (host:port; port 0 = any free port). With
  // an access file in `gate` (may be null), scrapes need basic auth whose
  // password is a token with the metrics scope. `gate` must outlive this.
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen, Runtime* rt,
                                                        const Gate* gate);
  ~Metrics();

  int port() const;
  // For grpc::ServerBuilder::experimental().SetInterceptorCreators().
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();
  // The same per-method metrics, reported by the method's own handler
  // instead of an interceptor (which costs the completion-queue methods
  // several microseconds a call). `full_method` is "/package.Service/Method".
  // REQUIRES: before the server starts.
  CallObserver* ObserverFor(std::string_view full_method);

  void CountEvents(uint64_t accepted, uint64_t duplicates, uint64_t rejected);
  // A module's own counter `name`{labels}, created on the first call with
  // that name and labels (`help` from the first call of the name).
  // REQUIRES: before the server starts.
  prometheus::Counter& AddCounter(const std::string& name, const std::string& help,
                                  const std::map<std::string, std::string>& labels);

  struct Impl;  // also seen by the interceptor

 private:
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_METRICS_H_
