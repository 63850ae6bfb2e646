// The one conversion from absl::Status to grpc::Status.
#ifndef MERCATO_SERVER_STATUS_UTIL_H_
#define MERCATO_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace mercato::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_STATUS_UTIL_H_
