// TLS and mutual TLS end to end, with certificates made by openssl at test
// time: a server with TLS refuses plaintext clients and clients that do not
// trust its CA; with a client CA it refuses clients without a certificate
// that CA signed; renewed certificate files take effect without a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "clients/client_util.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "server/access.h"
#include "tests/integration/pki.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

// Whether a channel with `tls` reaches the server and ModelStatus answers.
bool Reaches(const ServerProcess& server, const clients::ClientAuth& tls) {
  auto channel = clients::MakeChannel(server.target(), tls);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(2))) {
    return false;
  }
  v1::ModelStatusResponse st;
  return v1::Admin::NewStub(channel)->ModelStatus(Ctx(5).get(), v1::ModelStatusRequest(), &st).ok();
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = certs_.path();
    MakeCa(pki_, "ca");
    MakeCa(pki_, "other-ca");
    MakeCert(pki_, "server", "ca");
    MakeCert(pki_, "checkout", "ca");
    MakeCert(pki_, "stranger", "other-ca");
  }
  std::string File(const std::string& name) const { return pki_ + "/" + name; }
  std::vector<std::string> ServerFlags() const {
    return {"--tls_cert_file=" + File("server.pem"), "--tls_key_file=" + File("server.key")};
  }

  TempDir certs_, data_;
  std::string pki_;
};

TEST_F(TlsTest, ServesOnlyClientsThatTrustItsCertificate) {
  ServerProcess server(data_.path(), ServerFlags(), {File("ca.pem")});
  EXPECT_TRUE(Reaches(server, {File("ca.pem")}));
  EXPECT_FALSE(Reaches(server, {}));                      // plaintext
  EXPECT_FALSE(Reaches(server, {File("other-ca.pem")}));  // does not trust its CA
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateTheClientCaSigned) {
  std::vector<std::string> flags = ServerFlags();
  flags.push_back("--tls_client_ca_file=" + File("ca.pem"));
  ServerProcess server(data_.path(), flags,
                       {File("ca.pem"), File("checkout.pem"), File("checkout.key")});
  EXPECT_TRUE(Reaches(server, {File("ca.pem"), File("checkout.pem"), File("checkout.key")}));
  EXPECT_FALSE(Reaches(server, {File("ca.pem")}));  // no client certificate
  EXPECT_FALSE(Reaches(server, {File("ca.pem"), File("stranger.pem"), File("stranger.key")}));
}

TEST_F(TlsTest, ACertificateNamedInTheAccessFileGetsItsScopesOnly) {
  const std::string access = File("access");
  const std::string ops = server::NewToken();
  std::ofstream(access) << "cert storefront-pods checkout recommend\n"
                        << server::TokenLine("ops", ops, {server::Scope::kAdmin}) << "\n";
  std::vector<std::string> flags = ServerFlags();
  flags.push_back("--tls_client_ca_file=" + File("ca.pem"));
  flags.push_back("--auth_tokens_file=" + access);
  const clients::ClientAuth checkout{File("ca.pem"), File("checkout.pem"), File("checkout.key")};
  ServerProcess server(data_.path(), flags, checkout);
  auto channel = clients::MakeChannel(server.target(), checkout);
  v1::RecommendRequest req;
  req.set_user_id("u1");
  req.set_count(3);
  v1::RecommendResponse rec;
  grpc::Status s = v1::Recommender::NewStub(channel)->Recommend(Ctx(5).get(), req, &rec);
  EXPECT_TRUE(s.ok()) << s.error_message();
  v1::ModelStatusResponse st;
  s = v1::Admin::NewStub(channel)->ModelStatus(Ctx(5).get(), {}, &st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_NE(s.error_message().find("'storefront-pods' lacks scope 'admin'"), std::string::npos)
      << s.error_message();
  // A token sent over the same certificate's channel speaks for the caller.
  clients::ClientAuth with_token = checkout;
  with_token.token = ops;
  EXPECT_TRUE(Reaches(server, with_token));
  // A certificate the CA signed but the file does not name.
  MakeCert(pki_, "intern", "ca");
  s = v1::Admin::NewStub(clients::MakeChannel(server.target(), {File("ca.pem"), File("intern.pem"),
                                                                File("intern.key")}))
          ->ModelStatus(Ctx(5).get(), {}, &st);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
}

TEST_F(TlsTest, RenewedCertificateFilesTakeEffectWithoutARestart) {
  std::vector<std::string> flags = ServerFlags();
  flags.push_back("--tls_reload_s=1");
  ServerProcess server(data_.path(), flags, {File("ca.pem")});
  ASSERT_FALSE(Reaches(server, {File("other-ca.pem")}));
  // The renewal is signed by the other CA: clients trusting it get in.
  MakeCert(pki_, "renewed", "other-ca");
  std::filesystem::copy_file(File("renewed.key"), File("server.key"),
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(File("renewed.pem"), File("server.pem"),
                             std::filesystem::copy_options::overwrite_existing);
  bool renewed = false;
  for (int i = 0; i < 20 && !renewed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    renewed = Reaches(server, {File("other-ca.pem")});
  }
  EXPECT_TRUE(renewed) << "the renewed certificate was not served within 10 s";
  EXPECT_FALSE(Reaches(server, {File("ca.pem")}));
}

TEST_F(TlsTest, RefusesToStartWithHalfATlsConfiguration) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tls_cert_file=" + File("server.pem")},
        std::vector<std::string>{"--tls_client_ca_file=" + File("ca.pem")},
        std::vector<std::string>{"--tls_cert_file=" + File("missing.pem"),
                                 "--tls_key_file=" + File("server.key")}}) {
    std::string command = std::string(MERCATO_SERVER_BINARY) + " --listen=127.0.0.1:0 --metrics_listen= --data_dir=" +
                          data_.path();
    for (const std::string& f : flags) command += " " + f;
    EXPECT_EQ(WEXITSTATUS(std::system((command + " 2>/dev/null").c_str())), 2) << command;
  }
}

}  // namespace
}  // namespace mercato::testing
