// Tokens and scopes end to end: real servers with an access file, called
// through channels that carry tokens; revocation by editing the file and by
// SIGHUP; the refusal to serve a network unauthenticated; the audit records
// of admin calls; and reflection behind the admin scope.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "clients/client_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "server/access.h"
#include "tests/integration/api_seeds.h"
#include "tests/integration/pki.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

using server::Scope;

grpc::Status CallRecommend(const std::string& target, const std::string& token) {
  auto stub = v1::Recommender::NewStub(clients::MakeChannel(target, {"", "", "", token}));
  v1::RecommendRequest req;
  req.set_user_id("u1");
  req.set_count(3);
  v1::RecommendResponse resp;
  return stub->Recommend(Ctx(5).get(), req, &resp);
}

grpc::Status CallStatus(const std::string& target, const std::string& token) {
  auto stub = v1::Admin::NewStub(clients::MakeChannel(target, {"", "", "", token}));
  v1::ModelStatusResponse resp;
  return stub->ModelStatus(Ctx(5).get(), v1::ModelStatusRequest(), &resp);
}

// Calls until `done(status)` or 15 s pass; the last status.
template <class Call, class Done>
grpc::Status Eventually(Call call, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  grpc::Status s = call();
  while (!done(s) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    s = call();
  }
  return s;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storefront_ = server::NewToken();
    ops_ = server::NewToken();
    file_ = files_.path() + "/access";
    WriteFile({server::TokenLine("storefront", storefront_, {Scope::kRecommend}),
               server::TokenLine("ops", ops_, {Scope::kAdmin, Scope::kIngest})});
  }
  void WriteFile(const std::vector<std::string>& lines) {
    std::ofstream out(file_ + ".tmp");
    out << "# Mercato access file\n";
    for (const std::string& l : lines) out << l << "\n";
    out.close();
    std::filesystem::rename(file_ + ".tmp", file_);
  }
  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    extra.push_back("--auth_tokens_file=" + file_);
    return std::make_unique<ServerProcess>(data_.path(), extra,
                                           clients::ClientAuth{"", "", "", ops_});
  }

  TempDir files_, data_;
  std::string storefront_, ops_, file_;
};

TEST_F(AuthTest, EachMethodNeedsItsScopeAndTheErrorNamesIt) {
  auto server = Start();
  const std::string t = server->target();
  EXPECT_TRUE(CallRecommend(t, storefront_).ok());
  EXPECT_TRUE(CallStatus(t, ops_).ok());

  grpc::Status s = CallRecommend(t, "");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("Bearer"), std::string::npos) << s.error_message();
  s = CallRecommend(t, server::NewToken());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  s = CallStatus(t, storefront_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("'admin'"), std::string::npos) << s.error_message();
  s = CallRecommend(t, ops_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(s.error_message().find("'recommend'"), std::string::npos) << s.error_message();

  // Ingest (a synchronous client stream) is admitted the same way.
  auto ingest = v1::Ingest::NewStub(clients::MakeChannel(t, {"", "", "", storefront_}));
  v1::PublishSummary summary;
  auto ctx = Ctx(5);
  auto writer = ingest->Publish(ctx.get(), &summary);
  writer->WritesDone();
  s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("'ingest'"), std::string::npos) << s.error_message();

  // Health stays open: load balancers carry no token.
  auto health = grpc::health::v1::Health::NewStub(clients::MakeChannel(t));
  grpc::health::v1::HealthCheckResponse h;
  ASSERT_TRUE(health->Check(Ctx(5).get(), grpc::health::v1::HealthCheckRequest(), &h).ok());
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AuthTest, ReflectionNeedsAdmin) {
  auto server = Start();
  namespace rv = grpc::reflection::v1alpha;
  auto list = [&](const std::string& token, std::vector<std::string>* names) {
    auto stub =
        rv::ServerReflection::NewStub(clients::MakeChannel(server->target(), {"", "", "", token}));
    auto ctx = Ctx(5);
    auto stream = stub->ServerReflectionInfo(ctx.get());
    rv::ServerReflectionRequest req;
    req.set_list_services("");
    stream->Write(req);
    req.set_file_containing_symbol("mercato.v1.Recommender");
    stream->Write(req);
    stream->WritesDone();
    rv::ServerReflectionResponse resp;
    while (stream->Read(&resp)) {
      for (const auto& s : resp.list_services_response().service()) names->push_back(s.name());
      if (resp.has_file_descriptor_response()) names->push_back("file descriptors");
    }
    return stream->Finish();
  };
  std::vector<std::string> names;
  ASSERT_TRUE(list(ops_, &names).ok());
  EXPECT_NE(std::find(names.begin(), names.end(), "mercato.v1.Recommender"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "file descriptors"), names.end());
  names.clear();
  const grpc::Status s = list(storefront_, &names);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(names.empty());
}

TEST_F(AuthTest, ARevokedTokenStopsWorkingWithoutARestart) {
  auto server = Start();
  const std::string t = server->target();
  ASSERT_TRUE(CallRecommend(t, storefront_).ok());
  // Edited: the file's change is noticed within 2 s.
  const auto edited = std::chrono::steady_clock::now();
  WriteFile({server::TokenLine("ops", ops_, {Scope::kAdmin, Scope::kIngest})});
  grpc::Status s = Eventually([&] { return CallRecommend(t, storefront_); },
                              [](const grpc::Status& s) { return !s.ok(); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_LE(std::chrono::steady_clock::now() - edited, std::chrono::seconds(2));

  // SIGHUP: a line of the same length replaced, and the file's time set
  // back, so that only the signal can make the server read it.
  const std::string fresh = server::NewToken();
  const auto stamp = std::filesystem::last_write_time(file_);
  const std::string ops_line = server::TokenLine("ops", ops_, {Scope::kAdmin, Scope::kIngest});
  {
    std::ofstream out(file_, std::ios::in | std::ios::out);
    out << "# Mercato access file\n"
        << server::TokenLine("ops", fresh, {Scope::kAdmin, Scope::kIngest}) << "\n";
  }
  std::filesystem::last_write_time(file_, stamp);
  std::this_thread::sleep_for(std::chrono::seconds(3));  // beyond one poll of the file
  EXPECT_TRUE(CallStatus(t, ops_).ok()) << "only a SIGHUP should load the file";
  server->Signal(SIGHUP);
  s = Eventually([&] { return CallStatus(t, fresh); },
                 [](const grpc::Status& s) { return s.ok(); });
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(CallStatus(t, ops_).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // A broken file keeps the grants in force.
  WriteFile({"token broken"});
  server->Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(CallStatus(t, fresh).ok());
}

TEST_F(AuthTest, AdminCallsAreAuditedWithoutTheErasedCustomer) {
  auto server = Start();
  const std::string t = server->target();
  EXPECT_FALSE(CallStatus(t, storefront_).ok());
  auto admin = v1::Admin::NewStub(server->channel());
  v1::DeleteUserRequest del;
  del.set_user_id("customer-4711");
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(admin->DeleteUser(Ctx().get(), del, &deleted).ok());
  EXPECT_FALSE(CallRecommend(t, "").ok());  // not an admin method: not audited

  // Kept across a kill -9.
  server->Kill();
  server = Start();
  v1::ReadAuditRequest req;
  req.set_from_number(1);
  req.set_limit(100);
  v1::ReadAuditResponse audit;
  ASSERT_TRUE(v1::Admin::NewStub(server->channel())->ReadAudit(Ctx().get(), req, &audit).ok());
  ASSERT_EQ(audit.records_size(), 2) << audit.DebugString();
  EXPECT_EQ(audit.records(0).who(), "storefront");
  EXPECT_EQ(audit.records(0).method(), "/mercato.v1.Admin/ModelStatus");
  EXPECT_EQ(audit.records(0).code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(audit.records(1).who(), "ops");
  EXPECT_EQ(audit.records(1).method(), "/mercato.v1.Admin/DeleteUser");
  EXPECT_EQ(audit.records(1).code(), 0);
  EXPECT_EQ(audit.DebugString().find("4711"), std::string::npos);
  EXPECT_GT(audit.records(1).time_ms(), audit.records(0).time_ms() - 1);
}

TEST_F(AuthTest, MetricsScrapesNeedATokenOfTheMetricsScope) {
  const std::string scraper = server::NewToken();
  WriteFile({server::TokenLine("ops", ops_, {Scope::kAdmin}),
             server::TokenLine("prometheus", scraper, {Scope::kMetrics})});
  auto server = Start();
  auto basic = [](const std::string& password) {
    std::string encoded;
    absl::Base64Escape("prometheus:" + password, &encoded);
    return "Authorization: Basic " + encoded + "\r\n";
  };
  EXPECT_NE(HttpGet(server->metrics_port(), "/metrics", basic(scraper)).find("mercato_"),
            std::string::npos);
  EXPECT_EQ(HttpGet(server->metrics_port(), "/metrics").find("mercato_"), std::string::npos);
  EXPECT_EQ(HttpGet(server->metrics_port(), "/metrics", basic(ops_)).find("mercato_"),
            std::string::npos);
}

// Every method of every service the server answers, over TLS, with one
// token per scope: without a token it is refused as unauthenticated, with
// each token but one as lacking the scope, and that one token's call does
// the work. The services come from the server (health), the requests from
// the seed files, so a new method is covered without editing this test.
TEST(AuthMatrixTest, EveryMethodNeedsExactlyItsOneScopeOverTls) {
  TempDir pki, data;
  MakeCa(pki.path(), "ca");
  MakeCert(pki.path(), "server", "ca");
  const std::string ca = pki.path() + "/ca.pem";
  std::map<Scope, std::string> tokens;
  std::vector<Scope> every;
  std::ofstream access(pki.path() + "/access");
  for (int i = 0; i < server::kScopeCount; ++i) {
    const Scope s = static_cast<Scope>(i);
    tokens[s] = server::NewToken();
    every.push_back(s);
    access << server::TokenLine(std::string(server::ScopeName(s)), tokens[s], {s}) << "\n";
  }
  const std::string all = server::NewToken();
  access << server::TokenLine("all", all, every) << "\n";
  access.close();
  ServerProcess server(data.path(),
                       {"--tls_cert_file=" + pki.path() + "/server.pem",
                        "--tls_key_file=" + pki.path() + "/server.key",
                        "--auth_tokens_file=" + pki.path() + "/access"},
                       {ca, "", "", all});
  auto stub_for = [&](const std::string& token) {
    return std::make_unique<grpc::GenericStub>(clients::MakeChannel(server.target(), {ca, "", "", token}));
  };
  const auto everything = stub_for(all), anonymous = stub_for("");
  std::map<Scope, std::unique_ptr<grpc::GenericStub>> scoped;
  for (const auto& [s, token] : tokens) scoped[s] = stub_for(token);
  // The data the methods read (events, items, orders) first, applied; the
  // erasure's request names another customer, whom nothing else reads, and
  // the backup's a folder not yet written.
  const std::set<std::string> once = {"/mercato.v1.Admin/DeleteUser", "/mercato.v1.Admin/Backup"};
  auto number = [&](const std::string& path) { return once.contains(path) ? 999 : 1; };
  for (const auto& [path, text] : Seeds()) {
    std::string reply;
    if (!once.contains(path)) CallRaw(*everything, path, SeedRequest(path, 1), &reply);
  }
  auto admin = v1::Admin::NewStub(server.channel());
  WaitCaughtUp(*admin);
  size_t methods = 0;
  for (const std::string& name : ServedServices(server.channel())) {
    const auto* service = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int m = 0; m < service->method_count(); ++m) {
      if (service->method(m)->client_streaming() || service->method(m)->server_streaming()) continue;
      const std::string path = absl::StrCat("/", name, "/", service->method(m)->name());
      const std::string request = SeedRequest(path, number(path));
      std::string reply;
      if (name == grpc::health::v1::Health::service_full_name()) {
        EXPECT_TRUE(CallRaw(*anonymous, path, request, &reply).ok()) << path;
        continue;
      }
      ++methods;
      EXPECT_EQ(CallRaw(*anonymous, path, request, &reply).error_code(),
                grpc::StatusCode::UNAUTHENTICATED)
          << path;
      std::vector<std::string> admitted;
      for (const auto& [s, stub] : scoped) {
        const grpc::Status status = CallRaw(*stub, path, request, &reply);
        if (status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
          EXPECT_NE(status.error_message().find("lacks scope '"), std::string::npos) << path;
          continue;
        }
        admitted.emplace_back(server::ScopeName(s));
        EXPECT_TRUE(status.ok()) << path << " with scope " << server::ScopeName(s) << ": "
                                 << status.error_code() << " " << status.error_message();
      }
      EXPECT_EQ(admitted.size(), 1u) << path << " admitted " << absl::StrJoin(admitted, ", ");
    }
  }
  EXPECT_GE(methods, 15u);
}

TEST_F(AuthTest, MalformedAuthorizationIsRefusedAndTheServerCarriesOn) {
  auto server = Start();
  auto stub = v1::Recommender::NewStub(clients::MakeChannel(server->target()));
  auto call = [&](const std::string& key, const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ctx.AddMetadata(key, value);
    v1::RecommendRequest req;
    req.set_user_id("u1");
    req.set_count(3);
    v1::RecommendResponse resp;
    return stub->Recommend(&ctx, req, &resp);
  };
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"authorization", "Basic b3BzOnNlY3JldA=="},
           {"authorization", "Bearer"},
           {"authorization", "bearer " + storefront_},
           {"authorization", "Bearer  " + storefront_},
           {"authorization-bin", std::string("\0\xff\x01binary", 9)},
           {"authorization", "Bearer " + std::string(100000, 'a')},
       }) {
    const grpc::Status s = call(key, value);
    EXPECT_FALSE(s.ok()) << key << ": " << value.substr(0, 40);
    EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << key;
  }
  // The server serves on (the oversized header may end the connection it
  // came on, which channels to the same address share: a reconnect).
  const grpc::Status after = Eventually([&] { return CallRecommend(server->target(), storefront_); },
                                        [](const grpc::Status& s) { return s.ok(); });
  EXPECT_TRUE(after.ok()) << after.error_code() << " " << after.error_message();
}

TEST_F(AuthTest, ANetworkAddressWithoutAuthenticationIsRefusedWithWhatToConfigure) {
  std::string err;
  EXPECT_EQ(RunServer("--listen=0.0.0.0:0", &err), 2);
  EXPECT_NE(err.find("--auth_tokens_file"), std::string::npos) << err;
  EXPECT_NE(err.find("--insecure_allow_unauthenticated"), std::string::npos) << err;
  EXPECT_NE(err.find("--tls_client_ca_file"), std::string::npos) << err;

  WriteFile({"token ops 1234 admin"});
  EXPECT_EQ(RunServer("--listen=127.0.0.1:0 --auth_tokens_file=" + file_, &err), 2);
  EXPECT_NE(err.find(file_ + ":2: the token's hash must be 64 hex digits"), std::string::npos)
      << err;

  // Allowed when told, or with tokens.
  WriteFile({server::TokenLine("ops", ops_, {Scope::kAdmin})});
  for (const std::string& flags : std::vector<std::string>{"--insecure_allow_unauthenticated",
                                                           "--auth_tokens_file=" + file_}) {
    ServerProcess s(data_.path(), {"--listen=0.0.0.0:0", flags}, {"", "", "", ops_});
    EXPECT_TRUE(CallStatus(s.target(), ops_).ok()) << flags;
  }
}

}  // namespace
}  // namespace mercato::testing
