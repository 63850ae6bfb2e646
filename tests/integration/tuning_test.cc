// The recommender's hyperparameter search through a real server: started
// with deliberately bad iALS flags, a retrain searches on the shop's own log
// and adopts a better configuration, shown in ModelStatus and Prometheus;
// a server killed during the search and restarted (twice) ends with the
// same trials and state.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "testing/demo_shop.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

const v1::ModelInfo& Recommend(const v1::ModelStatusResponse& st) {
  for (const v1::ModelInfo& m : st.models()) {
    if (m.name() == "recommend") return m;
  }
  static const v1::ModelInfo none;
  ADD_FAILURE() << "no recommend model";
  return none;
}

// Waits until the settled recommendation model holds the whole log and its
// search's trials are shown, no model's fit runs, and the log has not grown
// for half a second: a fit adopted where its adopt-after count fell, before
// its FIT_DONE record landed, still lengthens the log by that record.
v1::ModelStatusResponse WaitTuned(ServerProcess& server) {
  auto admin = v1::Admin::NewStub(server.channel());
  v1::ModelStatusResponse st;
  uint64_t quiet_at = 0;
  int quiet = 0;
  for (int i = 0; i < 1200; ++i) {
    st = Status(*admin);
    const v1::ModelInfo& m = Recommend(st);
    const bool fitting =
        std::any_of(st.models().begin(), st.models().end(),
                    [](const v1::ModelInfo& info) { return info.retrain_running(); });
    const bool tuned =
        st.ready() && m.trials_size() > 0 && !fitting && m.digest_sequence() == st.log_sequence();
    quiet = tuned && st.log_sequence() == quiet_at ? quiet + 1 : 0;
    quiet_at = st.log_sequence();
    if (quiet == 5) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "no search was adopted within 120 s";
  return st;
}

// The FIT_DONE records in the log, as "model started@sequence".
std::vector<std::string> FitsDone(ServerProcess& server) {
  std::vector<std::string> out;
  for (const v1::LoggedEvent& e : ReadWholeLog(*v1::Admin::NewStub(server.channel()))) {
    if (e.event().type() != v1::FIT_DONE) continue;
    out.push_back(absl::StrCat(e.event().payload(), " ", static_cast<uint64_t>(e.event().value()),
                               "@", e.sequence()));
  }
  return out;
}

const std::vector<std::string> kBadFlags = {
    "--rec_unobserved_weight=0.5",     "--rec_regularization=1",
    "--rec_retrain_every=0",           "--rec_tuning_trials=6",
    "--rec_tuning_holdout_users=1000", "--checkpoint_interval_s=3600"};

TEST(TuningTest, ASearchFromBadFlagsIsAdoptedAndSurvivesKills) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(dir.path(), kBadFlags);
  ASSERT_NO_FATAL_FAILURE(LoadShop(server->channel(), 1500, 400, 90));
  v1::RetrainResponse retrain;
  ASSERT_TRUE(v1::Admin::NewStub(server->channel())
                  ->Retrain(Ctx().get(), v1::RetrainRequest(), &retrain)
                  .ok());
  server->Kill();  // during the search: the restart runs it again from the log
  server = std::make_unique<ServerProcess>(dir.path(), kBadFlags);
  const v1::ModelStatusResponse first = WaitTuned(*server);
  const v1::ModelInfo& m = Recommend(first);
  const std::vector<std::string> fits = FitsDone(*server);
  ASSERT_EQ(m.trials_size(), 6);
  EXPECT_EQ(m.trials(0).parameters().at("unobserved_weight"), 0.5);
  EXPECT_EQ(m.trials(0).parameters().at("regularization"), 1);
  const v1::FitTrial* adopted = nullptr;
  for (const v1::FitTrial& t : m.trials()) {
    if (t.adopted()) adopted = &t;
  }
  ASSERT_NE(adopted, nullptr);
  EXPECT_GE(adopted->metrics().at("ndcg_at_10"), 1.2 * m.trials(0).metrics().at("ndcg_at_10"));
  EXPECT_EQ(m.gauges().at("unobserved_weight"), adopted->parameters().at("unobserved_weight"));
  EXPECT_EQ(m.gauges().at("holdout_ndcg_at_10"), adopted->metrics().at("ndcg_at_10"));
  EXPECT_EQ(m.counts().at("holdout_users"), 1000u);  // a sample of the held-out customers
  const std::string metrics = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find(R"(mercato_model_gauge{model="recommend",gauge="holdout_ndcg_at_10"})"),
            std::string::npos);

  // Killed again after the adoption: the same trials and state.
  server->Kill();
  server = std::make_unique<ServerProcess>(dir.path(), kBadFlags);
  const v1::ModelStatusResponse again = WaitTuned(*server);
  const v1::ModelInfo& n = Recommend(again);
  EXPECT_EQ(FitsDone(*server), fits);  // no fit starts anew on a replay
  EXPECT_EQ(n.digest_sequence(), m.digest_sequence());
  EXPECT_EQ(n.digest(), m.digest());
  ASSERT_EQ(n.trials_size(), m.trials_size());
  for (int i = 0; i < m.trials_size(); ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(n.trials(i), m.trials(i))) << i;
  }
}

TEST(TuningTest, PinnedHyperparametersStayAtTheirFlags) {
  TempDir dir;
  std::vector<std::string> flags = kBadFlags;
  flags.push_back("--rec_decay_half_life_days=60");
  flags.push_back("--rec_pinned=regularization,decay_half_life_days");
  ServerProcess server(dir.path(), flags);
  ASSERT_NO_FATAL_FAILURE(LoadShop(server.channel(), 300, 100, 30));
  v1::RetrainResponse retrain;
  ASSERT_TRUE(v1::Admin::NewStub(server.channel())
                  ->Retrain(Ctx().get(), v1::RetrainRequest(), &retrain)
                  .ok());
  const v1::ModelInfo m = Recommend(WaitTuned(server));
  ASSERT_EQ(m.trials_size(), 6);
  bool weights_moved = false;
  for (const v1::FitTrial& t : m.trials()) {
    EXPECT_EQ(t.parameters().at("regularization"), 1);
    EXPECT_EQ(t.parameters().at("decay_half_life_days"), 60);
    EXPECT_EQ(t.parameters().at("weight_purchase"), 8);  // the largest weight stays
    weights_moved = weights_moved || t.parameters().at("weight_view") != 1;
  }
  EXPECT_TRUE(weights_moved);  // the demo shop's views are searched
  EXPECT_EQ(m.gauges().at("regularization"), 1);
  EXPECT_EQ(m.gauges().at("decay_half_life_days"), 60);

  std::string err;
  EXPECT_EQ(RunServer("--rec_pinned=dimension", &err), 2);
  EXPECT_NE(err.find("rec_pinned"), std::string::npos) << err;
}

}  // namespace
}  // namespace mercato::testing
