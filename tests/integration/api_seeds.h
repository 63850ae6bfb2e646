// Every unary method of the API with a valid request (the seed files beside
// the services), called without stubs, and the services a server answers:
// for the tests that cover every method (fuzz, auth).
#ifndef MERCATO_TESTS_INTEGRATION_API_SEEDS_H_
#define MERCATO_TESTS_INTEGRATION_API_SEEDS_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {

inline grpc::Status CallRaw(grpc::GenericStub& stub, const std::string& method, const std::string& bytes,
                     std::string* reply) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status status;
  absl::Notification done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const auto& s : slices) reply->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

// A valid request of every unary method, in text format, from the seed
// files beside the services (server/fuzz_seeds.txt gives the format); "$i"
// becomes the call's number, so events, items and orders are new ones.
inline const std::map<std::string, std::string>& Seeds() {
  static const auto* seeds = [] {
    auto* out = new std::map<std::string, std::string>;
    std::vector<std::filesystem::path> files = {std::filesystem::path(MERCATO_SOURCE_DIR) /
                                                "server" / "fuzz_seeds.txt"};
    for (const auto& model :
         std::filesystem::directory_iterator(std::filesystem::path(MERCATO_SOURCE_DIR) / "models")) {
      const std::filesystem::path f = model.path() / "service" / "fuzz_seeds.txt";
      if (std::filesystem::exists(f)) files.push_back(f);
    }
    for (const std::filesystem::path& file : files) {
      std::ifstream in(file);
      std::string line, method;
      while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') {
          method.clear();
        } else if (method.empty()) {
          method = line;
          (*out)[method];
        } else {
          absl::StrAppend(&(*out)[method], line, "\n");
        }
      }
    }
    return out;
  }();
  return *seeds;
}

// The services the server answers: those of the API's proto files that its
// health service knows, and health itself.
inline std::vector<std::string> ServedServices(const std::shared_ptr<grpc::Channel>& channel) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  std::vector<std::string> out = {grpc::health::v1::Health::service_full_name()};
  for (const auto& proto : std::filesystem::directory_iterator(
           std::filesystem::path(MERCATO_SOURCE_DIR) / "proto" / "mercato" / "v1")) {
    const auto* file = google::protobuf::DescriptorPool::generated_pool()->FindFileByName(
        absl::StrCat("mercato/v1/", proto.path().filename().string()));
    if (file == nullptr) continue;
    for (int i = 0; i < file->service_count(); ++i) {
      grpc::health::v1::HealthCheckRequest req;
      req.set_service(file->service(i)->full_name());
      grpc::health::v1::HealthCheckResponse resp;
      const grpc::Status s = health->Check(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) << s.error_message();
      if (s.ok()) out.push_back(file->service(i)->full_name());
    }
  }
  return out;
}

// The seed request of `path` ("/package.Service/Method") with "$i" made
// `i`, serialized.
inline std::string SeedRequest(const std::string& path, int i) {
  const auto* method = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      absl::StrReplaceAll(path.substr(1), {{"/", "."}}));
  EXPECT_NE(method, nullptr) << path;
  if (method == nullptr) return "";
  std::unique_ptr<google::protobuf::Message> request(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(method->input_type())->New());
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      absl::StrReplaceAll(Seeds().at(path), {{"$i", absl::StrCat(i)}}), request.get()))
      << path;
  return request->SerializeAsString();
}

}  // namespace mercato::testing

#endif  // MERCATO_TESTS_INTEGRATION_API_SEEDS_H_
