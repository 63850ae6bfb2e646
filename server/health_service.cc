#include "server/health_service.h"

#include <algorithm>

namespace mercato::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::vector<std::string> services) : services_(std::move(services)) {
  ParseUnary(grpc::health::v1::Health::service_full_name(), "Check", &HealthService::Check);
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  serving_ = serving;
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  serving_ = false;
  shut_down_ = true;
}

HealthCheckResponse::ServingStatus HealthService::StatusOf(const std::string& service) const {
  if (!service.empty() &&
      std::find(services_.begin(), services_.end(), service) == services_.end()) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  absl::MutexLock lock(&mu_);
  return serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Check(grpc::ServerContext*, const HealthCheckRequest* req,
                                  HealthCheckResponse* resp) {
  const HealthCheckResponse::ServingStatus status = StatusOf(req->service());
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "service: unknown service name");
  }
  resp->set_status(status);
  return grpc::Status::OK;
}

grpc::Status HealthService::Watch(grpc::ServerContext* ctx, const HealthCheckRequest* req,
                                  grpc::ServerWriter<HealthCheckResponse>* writer) {
  // Sends the status now and on every change until the client leaves or the
  // server shuts down.
  HealthCheckResponse::ServingStatus last = HealthCheckResponse::UNKNOWN;
  for (;;) {
    const HealthCheckResponse::ServingStatus now = StatusOf(req->service());
    if (now != last) {
      HealthCheckResponse resp;
      resp.set_status(now);
      if (!writer->Write(resp)) return grpc::Status::OK;
      last = now;
    }
    absl::MutexLock lock(&mu_);
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shut_down_ || (serving_ != (last == HealthCheckResponse::SERVING));
    };
    mu_.AwaitWithTimeout(absl::Condition(&changed), absl::Milliseconds(200));
    if (shut_down_ || ctx->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the server is shutting down");
    }
  }
}

}  // namespace mercato::server
