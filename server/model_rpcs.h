// The model RPCs' handlers: validate the request, read the served snapshot,
// ask the model's view, convert. One factory per RPC; server.cc registers
// them on the completion-queue dispatcher.
#ifndef MERCATO_SERVER_MODEL_RPCS_H_
#define MERCATO_SERVER_MODEL_RPCS_H_

#include "mercato/v1/pricing.pb.h"
#include "server/async_unary.h"
#include "server/runtime.h"

namespace mercato::server {

// UNAVAILABLE while the runtime recovers.
grpc::Status NotReady();

UnaryHandler<v1::PriceElasticityRequest, v1::PriceElasticityResponse> PriceElasticityHandler(
    Runtime* rt);

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODEL_RPCS_H_
