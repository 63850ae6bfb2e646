// Online evaluation through a real server: a simulated storefront follows
// the recommendations of two experiment arms with planted click-through and
// purchase rates, sending the answers' recommendation ids back with its
// events. The rates the server reports hold the planted ones within their
// 95% intervals, the better arm leads, and the counts survive kill -9.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "core/clock.h"
#include "mercato/v1/experiments.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "testing/demo_shop.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

const std::vector<std::string> kFlags = {"--rec_experiment_arms=popular:popular",
                                         "--rec_retrain_every=0", "--exp_attribution_window_h=1"};
constexpr int kAnswersPerArm = 1500;
constexpr double kClickRate[2] = {0.25, 0.10};  // default, popular
constexpr double kPurchaseShare = 0.4;          // of clicks
constexpr double kPrice = 20;

v1::GetExperimentResultsResponse Results(ServerProcess& server) {
  v1::GetExperimentResultsResponse resp;
  grpc::Status s = v1::Experiments::NewStub(server.channel())
                       ->GetResults(Ctx().get(), v1::GetExperimentResultsRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

// Waits until both arms' answers are counted and the whole log applied.
v1::GetExperimentResultsResponse WaitCounted(ServerProcess& server) {
  auto admin = v1::Admin::NewStub(server.channel());
  v1::GetExperimentResultsResponse r;
  for (int i = 0; i < 300; ++i) {
    WaitCaughtUp(*admin);
    r = Results(server);
    uint64_t answers = 0;
    for (const v1::ExperimentResult& arm : r.arms()) answers += arm.answers();
    if (answers == 2 * kAnswersPerArm) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "the answers were not all counted: " << r.DebugString();
  return r;
}

const v1::ExperimentResult& Arm(const v1::GetExperimentResultsResponse& r, const std::string& arm) {
  for (const v1::ExperimentResult& x : r.arms()) {
    if (x.arm() == arm) return x;
  }
  static const v1::ExperimentResult none;
  ADD_FAILURE() << "no arm " << arm;
  return none;
}

void ExpectCovers(const v1::Rate& rate, double planted, const std::string& what) {
  EXPECT_LE(rate.low(), planted) << what << " " << rate.DebugString();
  EXPECT_GE(rate.high(), planted) << what << " " << rate.DebugString();
  EXPECT_LT(rate.high() - rate.low(), 0.06) << what;
}

TEST(ExperimentsTest, ReportedRatesHoldThePlantedOnesAndTheBetterArmLeads) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(dir.path(), kFlags);
  constexpr int kUsers = 300;
  ASSERT_NO_FATAL_FAILURE(LoadShop(server->channel(), kUsers, 100, 30));
  auto recommender = v1::Recommender::NewStub(server->channel());
  auto ingest = v1::Ingest::NewStub(server->channel());

  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0, 1);
  v1::EventBatch batch;
  int clicks[2] = {0, 0}, purchases[2] = {0, 0};
  const auto flush = [&] {
    v1::PublishSummary s;
    ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &s).ok());
    ASSERT_EQ(s.accepted(), static_cast<uint64_t>(batch.events_size()));
    batch.clear_events();
  };
  for (int i = 0; i < 2 * kAnswersPerArm; ++i) {
    const int arm = i % 2;
    v1::RecommendRequest req;
    req.set_user_id(absl::StrCat("user", i % kUsers));
    req.set_count(5);
    if (arm == 1) req.set_experiment_arm("popular");
    v1::RecommendResponse resp;
    ASSERT_TRUE(recommender->Recommend(Ctx().get(), req, &resp).ok());
    ASSERT_GT(resp.items_size(), 0);
    ASSERT_FALSE(resp.recommendation_id().empty());
    if (arm == 1) EXPECT_NE(resp.items(0).source(), v1::PERSONAL);
    if (u(rng) >= kClickRate[arm]) continue;
    ++clicks[arm];
    const int64_t now = core::Clock::Real()->NowMs();
    v1::Event* click = batch.add_events();
    click->set_event_id(absl::StrCat("click-", i));
    click->set_type(v1::CLICK);
    click->set_user_id(req.user_id());
    click->set_item_id(resp.items(0).item_id());
    click->set_timestamp_ms(now);
    click->set_recommendation_id(resp.recommendation_id());
    if (u(rng) < kPurchaseShare) {
      ++purchases[arm];
      v1::Event* buy = batch.add_events();
      *buy = *click;
      buy->set_event_id(absl::StrCat("buy-", i));
      buy->set_type(v1::PURCHASE);
      buy->set_quantity(1);
      buy->set_unit_price(kPrice);
      buy->set_order_id(absl::StrCat("order-", i));
    }
    if (batch.events_size() >= 100) flush();
  }
  // One click two hours after its answer: outside the one-hour window.
  v1::Event* late = batch.add_events();
  *late = batch.events(0);
  late->set_event_id("late-click");
  late->set_timestamp_ms(late->timestamp_ms() + 2 * 3600 * 1000);
  flush();

  const v1::GetExperimentResultsResponse r = WaitCounted(*server);
  EXPECT_EQ(r.attribution_window_ms(), 3600 * 1000);
  const char* const names[2] = {"default", "popular"};
  for (int arm = 0; arm < 2; ++arm) {
    const v1::ExperimentResult& x = Arm(r, names[arm]);
    EXPECT_EQ(x.answers(), static_cast<uint64_t>(kAnswersPerArm)) << names[arm];
    EXPECT_EQ(x.clicks(), static_cast<uint64_t>(clicks[arm])) << names[arm];
    EXPECT_EQ(x.purchases(), static_cast<uint64_t>(purchases[arm])) << names[arm];
    EXPECT_DOUBLE_EQ(x.revenue(), kPrice * purchases[arm]) << names[arm];
    ExpectCovers(x.click_rate(), kClickRate[arm], absl::StrCat(names[arm], " click rate"));
    ExpectCovers(x.purchase_rate(), kClickRate[arm] * kPurchaseShare,
                 absl::StrCat(names[arm], " purchase rate"));
  }
  EXPECT_EQ(Arm(r, "default").late_events() + Arm(r, "popular").late_events(), 1u);
  EXPECT_EQ(r.leading_arm(), "default");
  EXPECT_TRUE(r.leading_arm_significant());
  // Per source: the default arm answers the known customers personally;
  // the popular arm never does.
  uint64_t personal = 0;
  for (const v1::ExperimentResult& x : r.by_source()) {
    if (x.arm() == "default" && x.source() == v1::PERSONAL) personal = x.answers();
    if (x.arm() == "popular") EXPECT_NE(x.source(), v1::PERSONAL);
  }
  EXPECT_GT(personal, kAnswersPerArm * 9 / 10);
  const std::string metrics = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find(absl::StrCat(
                R"(mercato_experiment_answers{arm="default",source="personal"} )", personal)),
            std::string::npos);

  // Killed and restarted: the same results, from the log.
  server->Kill();
  server = std::make_unique<ServerProcess>(dir.path(), kFlags);
  WaitCaughtUp(*v1::Admin::NewStub(server->channel()), 30);
  const v1::GetExperimentResultsResponse again = Results(*server);
  ASSERT_EQ(again.by_source_size(), r.by_source_size());
  for (int i = 0; i < r.by_source_size(); ++i) {
    EXPECT_EQ(again.by_source(i).DebugString(), r.by_source(i).DebugString());
  }
}

TEST(ExperimentsTest, BadArmsAndIdsAreRefusedNamingTheField) {
  TempDir dir;
  ServerProcess server(dir.path(), kFlags);
  v1::RecommendRequest req;
  req.set_user_id("someone");
  req.set_count(3);
  req.set_experiment_arm("nope");
  v1::RecommendResponse resp;
  grpc::Status s = v1::Recommender::NewStub(server.channel())->Recommend(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("experiment_arm"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("popular"), std::string::npos) << s.error_message();

  v1::EventBatch batch;
  v1::Event* e = batch.add_events();
  e->set_event_id("e1");
  e->set_type(v1::CLICK);
  e->set_user_id("someone");
  e->set_item_id("item1");
  e->set_timestamp_ms(1767225600000);
  e->set_recommendation_id("r1.default.1.1767225600000.not-hex-at-all");
  v1::PublishSummary summary;
  s = v1::Ingest::NewStub(server.channel())->PublishBatch(Ctx().get(), batch, &summary);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("events[0].recommendation_id"), std::string::npos)
      << s.error_message();

  std::string err;
  EXPECT_EQ(RunServer("--rec_experiment_arms=Big:personal", &err), 2);
  EXPECT_NE(err.find("rec_experiment_arms"), std::string::npos) << err;
  EXPECT_EQ(RunServer("--rec_experiment_arms=b:random", &err), 2);
  EXPECT_NE(err.find("policy"), std::string::npos) << err;
}

}  // namespace
}  // namespace mercato::testing
