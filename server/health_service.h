// grpc.health.v1.Health for the server and each of its services: what
// `serving` says when asked (NOT_SERVING until recovery has finished, while a
// replica lags, and again while draining). Check asks it on every call, Watch
// every 200 ms.
//
// Written here rather than taken from gRPC's default health service, which
// runs on the callback API: its extra polling threads compete with the
// completion-queue thread for every request and cost the model RPCs about
// half their throughput on two cores.
//
// Thread-safe.
#ifndef MERCATO_SERVER_HEALTH_SERVICE_H_
#define MERCATO_SERVER_HEALTH_SERVICE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/own_parsing.h"

namespace mercato::server {

class HealthService final : public OwnParsing<grpc::health::v1::Health::Service> {
 public:
  // `services`: the fully qualified names answered besides "" (the server).
  HealthService(std::vector<std::string> services, std::function<bool()> serving);

  // Ends every Watch stream; called when the server shuts down.
  void Shutdown();

  grpc::Status Check(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::health::v1::HealthCheckResponse* resp) override;
  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::ServerWriter<grpc::health::v1::HealthCheckResponse>* writer) override;

 private:
  grpc::health::v1::HealthCheckResponse::ServingStatus StatusOf(const std::string& service) const;

  const std::vector<std::string> services_;
  const std::function<bool()> serving_;
  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_HEALTH_SERVICE_H_
