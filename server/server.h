// The gRPC front: thin services that validate, convert, delegate to the
// Runtime and convert the status back. Ingest, Catalog and Admin block on
// synced writes, so they run on gRPC's synchronous thread pool; the model
// RPCs never block and run on completion queues (server/async_unary.h).
#ifndef MERCATO_SERVER_SERVER_H_
#define MERCATO_SERVER_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/gate.h"
#include "server/metrics.h"
#include "server/runtime.h"

namespace mercato::server {

struct ServerOptions {
  // host:port to listen on; port 0 picks a free one.
  std::string listen = "127.0.0.1:50051";
  // Threads polling the completion queues of the model RPCs (>= 1).
  int cq_threads = 1;
  // Model RPCs each of those threads holds before it refuses the oldest
  // with RESOURCE_EXHAUSTED (server/async_unary.h: ServingQueue; >= 1).
  int max_queued_calls = 1000;
  // Largest request accepted.
  int max_message_bytes = 16 << 20;
  // How long shutdown waits for in-flight calls.
  absl::Duration drain_timeout = absl::Seconds(10);
  // Where RPCs and events are counted; null = nowhere. Not owned; must
  // outlive the server.
  Metrics* metrics = nullptr;
  // TLS: the server's certificate chain and key (PEM files; both or
  // neither), and for mutual TLS the CA that client certificates must chain
  // to. The files are read again every `tls_reload_seconds`, so renewed
  // certificates take effect without a restart.
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  int tls_reload_seconds = 60;
  // With a shared log: health is NOT_SERVING while the replica lags the
  // log's head by more than this many events (0 = however far).
  uint64_t max_serving_lag_events = 0;
  // Admits each call (null = every call). Not owned; must outlive the
  // server.
  const Gate* gate = nullptr;
};

// Thread-safe.
class MercatoServer {
 public:
  // Starts listening. Health is NOT_SERVING until MarkReady().
  static absl::StatusOr<std::unique_ptr<MercatoServer>> Start(const ServerOptions& options,
                                                              Runtime* runtime);
  ~MercatoServer();
  int port() const;
  // Health SERVING for the whole server and every service from now on,
  // except while a replica lags too far (ServerOptions).
  void MarkReady();
  // Health NOT_SERVING, stops accepting calls, drains in-flight ones.
  void Shutdown();
  void Wait();

 private:
  struct Impl;
  explicit MercatoServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_SERVER_H_
