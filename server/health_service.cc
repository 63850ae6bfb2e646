#include "server/health_service.h"

#include <algorithm>

namespace mercato::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

HealthService::HealthService(std::vector<std::string> services, std::function<bool()> serving)
    : services_(std::move(services)), serving_(std::move(serving)) {
  ParseUnary(grpc::health::v1::Health::service_full_name(), "Check", &HealthService::Check);
}

void HealthService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
}

HealthCheckResponse::ServingStatus HealthService::StatusOf(const std::string& service) const {
  if (!service.empty() &&
      std::find(services_.begin(), services_.end(), service) == services_.end()) {
    return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return HealthCheckResponse::NOT_SERVING;
  }
  return serving_() ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
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
  // Sends the status now and whenever it has changed, looking every 200 ms,
  // until the client leaves or the server shuts down.
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
    mu_.AwaitWithTimeout(absl::Condition(&shut_down_), absl::Milliseconds(200));
    if (shut_down_ || ctx->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the server is shutting down");
    }
  }
}

}  // namespace mercato::server
