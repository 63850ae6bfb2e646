// A real Prometheus (Debian's package) scrapes a real mercato-server with the
// project's deploy/prometheus configuration; the test reads the counts back
// through Prometheus' HTTP API. Also: every metric the Grafana dashboard
// queries exists in the server's /metrics output.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "clients/client_util.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

const std::string kDeploy = std::string(MERCATO_SOURCE_DIR) + "/deploy/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// The value of an instant query with one result, or "" when it has none.
std::string Query(int port, const std::string& promql) {
  const std::string body = HttpGet(port, "/api/v1/query?query=" + UrlEncode(promql));
  static const std::regex value(R"re("value":\[[0-9.]+,"([^"]*)"\])re");
  std::smatch m;
  return std::regex_search(body, m, value) ? m[1].str() : "";
}

class Prometheus {
 public:
  // Runs /usr/bin/prometheus with deploy/prometheus/ (scraping every second)
  // pointed at 127.0.0.1:`target_port`.
  Prometheus(const std::string& dir, int target_port) : port_(FreePort()) {
    std::filesystem::create_directories(dir + "/targets");
    std::ofstream(dir + "/prometheus.yml")
        << absl::StrReplaceAll(ReadFile(kDeploy + "prometheus/prometheus.yml"),
                               {{"scrape_interval: 15s", "scrape_interval: 1s"}});
    std::filesystem::copy_file(kDeploy + "prometheus/alerts.yml", dir + "/alerts.yml");
    std::ofstream(dir + "/targets/mercato.json")
        << "[{\"targets\": [\"127.0.0.1:" << target_port << "\"]}]\n";
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const std::string config = "--config.file=" + dir + "/prometheus.yml";
      const std::string storage = "--storage.tsdb.path=" + dir + "/data";
      const std::string listen = absl::StrCat("--web.listen-address=127.0.0.1:", port_);
      execl("/usr/bin/prometheus", "prometheus", config.c_str(), storage.c_str(), listen.c_str(),
            "--log.level=warn", nullptr);
      _exit(127);
    }
  }
  ~Prometheus() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }

 private:
  int port_;
  pid_t pid_ = -1;
};

// Polls `promql` until it equals `want` (up to 60 s); returns the last value.
std::string WaitFor(int port, const std::string& promql, const std::string& want) {
  std::string got;
  for (int i = 0; i < 300 && (got = Query(port, promql)) != want; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return got;
}

TEST(PrometheusTest, ScrapesExactCallCountsByMethodAndCode) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/prometheus"))
      << "install Debian's prometheus package (deploy/install-deps.sh does)";
  TempDir dir;
  ServerProcess server(dir.path() + "/mercato");
  ASSERT_GT(server.metrics_port(), 0);
  Prometheus prometheus(dir.path() + "/prometheus", server.metrics_port());

  auto admin = v1::Admin::NewStub(server.channel());
  for (int i = 0; i < 3; ++i) Status(*admin);
  auto pricing = v1::Pricing::NewStub(server.channel());
  for (int i = 0; i < 2; ++i) {
    v1::PriceElasticityResponse resp;
    EXPECT_EQ(pricing->PriceElasticity(Ctx().get(), v1::PriceElasticityRequest(), &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  auto segmenter = v1::Segmenter::NewStub(server.channel());
  v1::SegmentRequest nobody;
  nobody.set_user_id("nobody");
  v1::SegmentResponse segment;
  EXPECT_EQ(segmenter->Segment(Ctx().get(), nobody, &segment).error_code(),
            grpc::StatusCode::NOT_FOUND);

  EXPECT_EQ(WaitFor(prometheus.port(), R"(up{job="mercato"})", "1"), "1");
  EXPECT_EQ(WaitFor(prometheus.port(),
                    R"(grpc_server_handled_total{grpc_method="PriceElasticity",grpc_code="INVALID_ARGUMENT"})",
                    "2"),
            "2");
  EXPECT_EQ(Query(prometheus.port(),
                  R"(grpc_server_handled_total{grpc_service="mercato.v1.Admin",grpc_method="ModelStatus",grpc_code="OK"})"),
            "3");
  EXPECT_EQ(Query(prometheus.port(),
                  R"(grpc_server_handled_total{grpc_method="Segment",grpc_code="NOT_FOUND"})"),
            "1");
  EXPECT_EQ(Query(prometheus.port(), R"(sum(grpc_server_handled_total{grpc_method="PriceElasticity"}))"),
            "2");
  EXPECT_EQ(Query(prometheus.port(),
                  R"(grpc_server_handling_seconds_count{grpc_method="PriceElasticity"})"),
            "2");

  // What each model counts, and the recommendation model's retrain time.
  v1::RetrainRequest retrain;
  retrain.set_model("recommend");
  v1::RetrainResponse retrained;
  ASSERT_TRUE(admin->Retrain(Ctx().get(), retrain, &retrained).ok());
  EXPECT_EQ(WaitFor(prometheus.port(),
                    R"(mercato_model_count{model="recommend",count="retrains"})", "1"),
            "1");
  EXPECT_EQ(Query(prometheus.port(),
                  R"(mercato_model_count{model="recommend",count="waiting_events"})"),
            "0");
  EXPECT_EQ(Query(prometheus.port(),
                  R"(count(mercato_retrain_duration_seconds{model="recommend"} >= 0))"),
            "1");
  EXPECT_EQ(Query(prometheus.port(), R"(count(mercato_retrain_age_seconds{model="recommend"} >= 0))"),
            "1");

  const v1::ModelStatusResponse st = Status(*admin);
  for (const v1::ModelInfo& m : st.models()) {
    if (m.name() == "recommend") {
      EXPECT_GT(m.last_retrain_ms(), 1700000000000) << "the retrain's end, wall clock";
    }
  }

  // Every metric the dashboard and the alerts use is exported, the
  // experiment counts once a recommendation was served.
  v1::Event view;
  view.set_event_id("view-1");
  view.set_type(v1::VIEW);
  view.set_user_id("viewer");
  view.set_item_id("only-item");
  view.set_timestamp_ms(1767225600000);
  v1::PublishSummary published;
  ASSERT_TRUE(clients::PublishEvents(*server.channel(), {view}, 1, &published).ok());
  WaitCaughtUp(*admin);
  v1::RecommendRequest recommend;
  recommend.set_user_id("someone");
  recommend.set_count(1);
  v1::RecommendResponse recommended;
  ASSERT_TRUE(v1::Recommender::NewStub(server.channel())
                  ->Recommend(Ctx().get(), recommend, &recommended)
                  .ok());
  ASSERT_EQ(recommended.items_size(), 1);
  std::string exported;
  for (int i = 0; i < 100 && exported.find("\nmercato_experiment_answers{") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    exported = HttpGet(server.metrics_port(), "/metrics");
  }
  std::set<std::string> used;
  static const std::regex metric(R"(\b((?:grpc_server|mercato)_[a-z_]+)\{)");
  for (const char* file : {"grafana/mercato-dashboard.json", "prometheus/alerts.yml"}) {
    const std::string text = ReadFile(kDeploy + file);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), metric);
         it != std::sregex_iterator(); ++it) {
      used.insert((*it)[1].str());
    }
  }
  EXPECT_GE(used.size(), 10u);
  for (const std::string& name : used) {
    const bool found = exported.find("\n" + name + "{") != std::string::npos ||
                       exported.find("\n" + name + " ") != std::string::npos;
    EXPECT_TRUE(found) << name << " is not exported";
  }
}

}  // namespace
}  // namespace mercato::testing
