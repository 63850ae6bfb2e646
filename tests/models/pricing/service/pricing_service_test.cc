// PriceElasticity end to end: the demo shop through the real server, bad
// requests, and the same answers after SIGKILL or SIGTERM and a restart.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <limits>

#include "clients/client_util.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

core::DemoShopOptions SmallDenseShop() {
  core::DemoShopOptions o;
  o.users = 3000;
  o.items = 20;
  o.categories = 4;
  o.days = 60;
  return o;
}

v1::PriceElasticityResponse Ask(v1::Pricing::Stub& pricing, const v1::PriceElasticityRequest& req,
                                grpc::Status* status = nullptr) {
  v1::PriceElasticityResponse resp;
  grpc::Status s = pricing.PriceElasticity(Ctx().get(), req, &resp);
  if (status) *status = s;
  else EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

v1::PriceElasticityRequest ForItem(const std::string& item) {
  v1::PriceElasticityRequest req;
  req.set_item_id(item);
  req.add_candidate_prices(10);
  req.add_candidate_prices(20);
  return req;
}

class PricingTest : public ::testing::Test {
 protected:
  void LoadShop(ServerProcess& server) {
    v1::PublishSummary summary;
    ASSERT_TRUE(clients::LoadDemoShop(*server.channel(), shop_, 5000, &summary).ok());
    auto admin = v1::Admin::NewStub(server.channel());
    ASSERT_EQ(WaitCaughtUp(*admin, 30).lag_events(), 0u);
  }
  TempDir dir_;
  const core::DemoShop shop_ = core::GenerateDemoShop(SmallDenseShop());
};

TEST_F(PricingTest, AnswersFromTheDemoShopAndTheSameAfterRestarts) {
  auto server = std::make_unique<ServerProcess>(dir_.path());
  LoadShop(*server);
  auto pricing = v1::Pricing::NewStub(server->channel());
  const core::DemoItem& item = shop_.items[3];
  const v1::PriceElasticityResponse r = Ask(*pricing, ForItem(item.item.item_id));
  ASSERT_TRUE(r.has_estimate()) << r.note();
  EXPECT_TRUE(r.level() == v1::ITEM || r.level() == v1::SHRUNK) << r.note();
  EXPECT_NEAR(r.elasticity(), item.elasticity, 0.5);
  EXPECT_LT(r.ci_low(), r.elasticity());
  EXPECT_GT(r.ci_high(), r.elasticity());
  EXPECT_GE(r.observations(), 40u);
  EXPECT_LT(r.min_price_seen(), r.max_price_seen());
  ASSERT_EQ(r.candidates_size(), 2);
  EXPECT_GT(r.candidates(0).expected_demand(), r.candidates(1).expected_demand());
  EXPECT_GT(r.model_version(), 0u);

  v1::PriceElasticityRequest category;
  category.set_category(shop_.categories[0]);
  const v1::PriceElasticityResponse c = Ask(*pricing, category);
  EXPECT_EQ(c.level(), v1::CATEGORY);
  EXPECT_TRUE(c.has_estimate());

  // Within one customer segment: that segment's purchases only.
  auto segmenter = v1::Segmenter::NewStub(server->channel());
  v1::SegmentRequest who;
  who.set_user_id(shop_.users[0].user_id);
  v1::SegmentResponse segment;
  ASSERT_TRUE(segmenter->Segment(Ctx().get(), who, &segment).ok());
  v1::PriceElasticityRequest within = ForItem(item.item.item_id);
  within.set_segment_id(segment.segment_id());
  const v1::PriceElasticityResponse s = Ask(*pricing, within);
  EXPECT_GT(s.observations(), 0u);
  EXPECT_LT(s.observations(), r.observations() + 1);
  EXPECT_NE(s.elasticity(), r.elasticity());
  within.set_segment_id(63);
  grpc::Status unknown;
  Ask(*pricing, within, &unknown);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);

  // Replayed from the log after SIGKILL, then from a checkpoint after SIGTERM.
  server->Kill();
  server = std::make_unique<ServerProcess>(dir_.path());
  pricing = v1::Pricing::NewStub(server->channel());
  EXPECT_EQ(Ask(*pricing, ForItem(item.item.item_id)).elasticity(), r.elasticity());
  const int status = server->Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  server = std::make_unique<ServerProcess>(dir_.path());
  pricing = v1::Pricing::NewStub(server->channel());
  const v1::PriceElasticityResponse again = Ask(*pricing, ForItem(item.item.item_id));
  EXPECT_EQ(again.elasticity(), r.elasticity());
  EXPECT_EQ(again.standard_error(), r.standard_error());
}

TEST_F(PricingTest, BadRequestsNameTheFieldAndUnknownsAreNotFound) {
  ServerProcess server(dir_.path());
  auto pricing = v1::Pricing::NewStub(server.channel());
  struct Case {
    v1::PriceElasticityRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({v1::PriceElasticityRequest(), "item_id"});  // neither
  cases.push_back({ForItem("a"), "item_id"});
  cases.back().req.set_category("c");  // both
  cases.push_back({ForItem("a"), "unit_cost"});
  cases.back().req.set_unit_cost(std::numeric_limits<double>::quiet_NaN());
  cases.push_back({ForItem("a"), "candidate_prices[1]"});
  cases.back().req.set_candidate_prices(1, 0);
  cases.push_back({ForItem("a"), "candidate_prices[0]"});
  cases.back().req.set_candidate_prices(0, -3);
  cases.push_back({ForItem("a"), "candidate_prices"});
  for (int i = 0; i < 100; ++i) cases.back().req.add_candidate_prices(1);
  cases.push_back({ForItem(std::string(200, 'x')), "item_id"});
  for (const Case& c : cases) {
    grpc::Status s;
    Ask(*pricing, c.req, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
  }
  grpc::Status s;
  Ask(*pricing, ForItem("never-seen"), &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::PriceElasticityRequest category;
  category.set_category("never-seen");
  Ask(*pricing, category, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("category"), std::string::npos);
}

}  // namespace
}  // namespace mercato::testing
