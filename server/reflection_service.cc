#include "server/reflection_service.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace mercato::server {
namespace {

namespace rv = grpc::reflection::v1alpha;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

// `file` and every file it imports, each once, the file first.
void AddFiles(const FileDescriptor* file, absl::flat_hash_set<std::string>* sent,
              rv::FileDescriptorResponse* out) {
  if (!sent->insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(out->add_file_descriptor_proto());
  for (int i = 0; i < file->dependency_count(); ++i) AddFiles(file->dependency(i), sent, out);
}

void NotFound(std::string message, rv::ServerReflectionResponse* resp) {
  rv::ErrorResponse* e = resp->mutable_error_response();
  e->set_error_code(static_cast<int>(grpc::StatusCode::NOT_FOUND));
  e->set_error_message(std::move(message));
}

}  // namespace

ReflectionService::ReflectionService(std::vector<std::string> services)
    : services_(std::move(services)) {}

grpc::Status ReflectionService::ServerReflectionInfo(
    grpc::ServerContext* ctx,
    grpc::ServerReaderWriter<rv::ServerReflectionResponse, rv::ServerReflectionRequest>* stream) {
  std::string who;
  if (grpc::Status s = Admit(0, *ctx, &who); !s.ok()) return s;
  rv::ServerReflectionRequest req;
  while (stream->Read(&req)) {
    rv::ServerReflectionResponse resp;
    Answer(req, &resp);
    Audit(0, who, &req, grpc::Status::OK);
    if (!stream->Write(resp)) break;
  }
  return grpc::Status::OK;
}

void ReflectionService::Answer(const rv::ServerReflectionRequest& req,
                               rv::ServerReflectionResponse* resp) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  resp->set_valid_host(req.host());
  *resp->mutable_original_request() = req;
  absl::flat_hash_set<std::string> sent;
  switch (req.message_request_case()) {
    case rv::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) {
        resp->mutable_list_services_response()->add_service()->set_name(name);
      }
      return;
    case rv::ServerReflectionRequest::kFileByFilename:
      if (const FileDescriptor* f = pool->FindFileByName(req.file_by_filename())) {
        return AddFiles(f, &sent, resp->mutable_file_descriptor_response());
      }
      return NotFound(absl::StrCat("file_by_filename: no file ", req.file_by_filename()), resp);
    case rv::ServerReflectionRequest::kFileContainingSymbol:
      if (const FileDescriptor* f = pool->FindFileContainingSymbol(req.file_containing_symbol())) {
        return AddFiles(f, &sent, resp->mutable_file_descriptor_response());
      }
      return NotFound(
          absl::StrCat("file_containing_symbol: no symbol ", req.file_containing_symbol()), resp);
    case rv::ServerReflectionRequest::kFileContainingExtension: {
      const rv::ExtensionRequest& x = req.file_containing_extension();
      const google::protobuf::Descriptor* type = pool->FindMessageTypeByName(x.containing_type());
      const google::protobuf::FieldDescriptor* ext =
          type ? pool->FindExtensionByNumber(type, x.extension_number()) : nullptr;
      if (ext != nullptr)
        return AddFiles(ext->file(), &sent, resp->mutable_file_descriptor_response());
      return NotFound(absl::StrCat("file_containing_extension: no extension ", x.extension_number(),
                                   " of ", x.containing_type()),
                      resp);
    }
    case rv::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const google::protobuf::Descriptor* type =
          pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
      if (type == nullptr) {
        return NotFound(absl::StrCat("all_extension_numbers_of_type: no type ",
                                     req.all_extension_numbers_of_type()),
                        resp);
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      rv::ExtensionNumberResponse* out = resp->mutable_all_extension_numbers_response();
      out->set_base_type_name(type->full_name());
      for (const auto* e : extensions) out->add_extension_number(e->number());
      return;
    }
    case rv::ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      break;
  }
  resp->mutable_error_response()->set_error_code(
      static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  resp->mutable_error_response()->set_error_message("message_request: none set");
}

}  // namespace mercato::server
