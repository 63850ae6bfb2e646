// grpc.reflection.v1alpha.ServerReflection over the generated descriptor
// pool: lists the served services and hands out the descriptor files a
// client needs to call them (grpcurl, grpc_cli). Served here rather than by
// gRPC's reflection plugin so that it is admitted like every Mercato method:
// it needs the admin scope.
//
// Thread-safe.
#ifndef MERCATO_SERVER_REFLECTION_SERVICE_H_
#define MERCATO_SERVER_REFLECTION_SERVICE_H_

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/own_parsing.h"

namespace mercato::server {

class ReflectionService final
    : public OwnParsing<grpc::reflection::v1alpha::ServerReflection::Service> {
 public:
  // `services`: the fully qualified names listed.
  explicit ReflectionService(std::vector<std::string> services);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<grpc::reflection::v1alpha::ServerReflectionResponse,
                               grpc::reflection::v1alpha::ServerReflectionRequest>* stream)
      override;

 private:
  void Answer(const grpc::reflection::v1alpha::ServerReflectionRequest& req,
              grpc::reflection::v1alpha::ServerReflectionResponse* resp) const;

  const std::vector<std::string> services_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_REFLECTION_SERVICE_H_
