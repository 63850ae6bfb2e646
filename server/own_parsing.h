// Request parsing in Mercato's hands rather than gRPC's, so that bytes that
// are no request get INVALID_ARGUMENT with a message, not gRPC's bare
// INTERNAL ("Failed to parse request"), and a client stream can count a
// damaged message instead of ending at it.
//
// gRPC parses a request before any handler runs and answers a failure on its
// own. Methods taken over here receive the raw bytes (grpc::ByteBuffer) and
// parse them with ParseRequest. The synchronous services mark their methods
// through OwnParsing; the completion-queue methods request their calls raw
// (server/async_unary.h). gRPC's own services (reflection) still parse for
// themselves.
#ifndef MERCATO_SERVER_OWN_PARSING_H_
#define MERCATO_SERVER_OWN_PARSING_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/support/async_unary_call.h>
#include <grpcpp/support/method_handler.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/gate.h"
#include "server/status_util.h"

namespace mercato::server {

// Parses `bytes` into `message`; INVALID_ARGUMENT naming `field` and the
// message type when they are not one (and `message` is left empty). `bytes`
// is consumed.
inline absl::Status ParseRequest(grpc::ByteBuffer& bytes, absl::string_view field,
                                 google::protobuf::Message* message) {
  if (grpc::SerializationTraits<google::protobuf::Message>::Deserialize(&bytes, message).ok()) {
    return absl::OkStatus();
  }
  message->Clear();
  return absl::InvalidArgumentError(absl::StrCat(field, ": bytes that are not a ",
                                                 message->GetDescriptor()->full_name(),
                                                 " (undecodable protobuf)"));
}

// Serializes `response` for a raw method. False only when protobuf cannot
// serialize it (over 2 GiB).
inline bool SerializeResponse(const google::protobuf::Message& response, grpc::ByteBuffer* out) {
  bool own_buffer = false;
  return grpc::SerializationTraits<google::protobuf::Message>::Serialize(response, out, &own_buffer)
      .ok();
}

// The admission of each method of a synchronous service, by the method's
// index; none = every call admitted (health).
class GatedMethods {
 public:
  virtual ~GatedMethods() = default;
  // Called once, by ServiceRegistrar::Serve, before the server starts.
  void SetGates(std::vector<std::unique_ptr<MethodGate>> gates) { gates_ = std::move(gates); }

 protected:
  // Null when every call is admitted.
  const MethodGate* GateOf(int index) const {
    return static_cast<size_t>(index) < gates_.size() ? gates_[index].get() : nullptr;
  }
  // OK when the call may run; a refusal of an audited method is recorded.
  grpc::Status Admit(int index, const grpc::ServerContext& ctx, std::string* who) const {
    const MethodGate* gate = GateOf(index);
    if (gate == nullptr) return grpc::Status::OK;
    grpc::Status s = gate->Admit(ctx, who);
    if (!s.ok() && gate->audited()) gate->Record(*who, nullptr, s);
    return s;
  }
  // Records an admitted call's outcome when its method is audited.
  void Audit(int index, absl::string_view who, const google::protobuf::Message* request,
             const grpc::Status& outcome) const {
    if (const MethodGate* gate = GateOf(index); gate != nullptr && gate->audited()) {
      gate->Record(who, request, outcome);
    }
  }

 private:
  std::vector<std::unique_ptr<MethodGate>> gates_;
};

// A generated synchronous service whose methods can be taken over.
// REQUIRES: Base is a generated `Service` class, `service` its full name.
template <class Base>
class OwnParsing : public Base, public GatedMethods {
 protected:
  // Method `method` (unary) is served by `fn` on requests parsed here.
  template <class Self, class Req, class Resp>
  void ParseUnary(const char* service, const char* method,
                  grpc::Status (Self::*fn)(grpc::ServerContext*, const Req*, Resp*)) {
    using Streamer = grpc::ServerUnaryStreamer<grpc::ByteBuffer, grpc::ByteBuffer>;
    Self* self = static_cast<Self*>(this);
    const int index = Index(service, method);
    this->MarkMethodStreamed(
        index, new grpc::internal::StreamedUnaryHandler<grpc::ByteBuffer, grpc::ByteBuffer>(
                   [self, fn, index](grpc::ServerContext* ctx, Streamer* stream) {
                     std::string who;
                     if (grpc::Status s = self->Admit(index, *ctx, &who); !s.ok()) return s;
                     grpc::ByteBuffer bytes;
                     if (!stream->Read(&bytes)) {
                       return grpc::Status(grpc::StatusCode::CANCELLED, "request: none arrived");
                     }
                     Req req;
                     if (absl::Status s = ParseRequest(bytes, "request", &req); !s.ok()) {
                       return ToGrpcStatus(s);
                     }
                     Resp resp;
                     grpc::Status status = (self->*fn)(ctx, &req, &resp);
                     self->Audit(index, who, &req, status);
                     if (!status.ok()) return status;
                     grpc::ByteBuffer out;
                     if (!SerializeResponse(resp, &out)) {
                       return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                           "response: too large to serialize");
                     }
                     stream->Write(out);
                     return grpc::Status::OK;
                   }));
  }

  // Method `method` (client streaming) is served by `fn`, which reads the
  // stream's messages as bytes and parses each with ParseRequest.
  template <class Self, class Resp>
  void ParseClientStream(const char* service, const char* method,
                         grpc::Status (Self::*fn)(grpc::ServerContext*,
                                                  grpc::ServerReader<grpc::ByteBuffer>*, Resp*)) {
    const int index = Index(service, method);
    this->MarkMethodStreamed(
        index, new grpc::internal::ClientStreamingHandler<Self, grpc::ByteBuffer, Resp>(
                   [fn, index](Self* self, grpc::ServerContext* ctx,
                               grpc::ServerReader<grpc::ByteBuffer>* reader, Resp* resp) {
                     std::string who;
                     if (grpc::Status s = self->Admit(index, *ctx, &who); !s.ok()) return s;
                     return (self->*fn)(ctx, reader, resp);
                   },
                   static_cast<Self*>(this)));
  }

 private:
  // The method's position in its service, which is its handler's index.
  static int Index(const char* service, const char* method) {
    const google::protobuf::ServiceDescriptor* s =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    return s->FindMethodByName(method)->index();
  }
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_OWN_PARSING_H_
