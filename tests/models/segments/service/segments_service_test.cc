// Segmenter end to end: the demo shop through the real server, the fitted
// segments, customer value, erasure, bad input, and the same answers after a
// SIGTERM checkpoint and restart.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "clients/client_util.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

v1::SegmentResponse Ask(v1::Segmenter::Stub& stub, const std::string& user, grpc::Status* status,
                        uint32_t horizon = 0) {
  v1::SegmentRequest req;
  req.set_user_id(user);
  req.set_horizon_days(horizon);
  v1::SegmentResponse resp;
  *status = stub.Segment(Ctx().get(), req, &resp);
  return resp;
}

// Waits until the segment model has a fit (it runs in the background).
v1::ListSegmentsResponse WaitForSegments(v1::Segmenter::Stub& stub) {
  v1::ListSegmentsResponse resp;
  for (int i = 0; i < 1000; ++i) {
    resp.Clear();
    if (stub.ListSegments(Ctx().get(), v1::ListSegmentsRequest(), &resp).ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return resp;
}

TEST(SegmentsTest, DemoShopCustomersGetSegmentsValueAndErasure) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(dir.path(), std::vector<std::string>{"--segment_refit_purchases=5000"});
  const core::DemoShop shop = core::GenerateDemoShop(core::DemoShopOptions());
  v1::PublishSummary summary;
  ASSERT_TRUE(clients::LoadDemoShop(*server->channel(), shop, 5000, &summary).ok());
  auto admin = v1::Admin::NewStub(server->channel());
  ASSERT_EQ(WaitCaughtUp(*admin, 60).lag_events(), 0u);
  auto seg = v1::Segmenter::NewStub(server->channel());
  const v1::ListSegmentsResponse list = WaitForSegments(*seg);
  ASSERT_EQ(list.segments_size(), 5);
  uint64_t customers = 0;
  for (const auto& s : list.segments()) {
    customers += s.size();
    EXPECT_FALSE(s.label().empty());
    EXPECT_EQ(s.features().size(), 7u);
  }
  EXPECT_GT(customers, 100u);

  const std::string champion = shop.users[0].user_id;  // user0 is a planted champion
  grpc::Status st;
  const v1::SegmentResponse a = Ask(*seg, champion, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(a.label().empty());
  EXPECT_EQ(a.horizon_days(), 90u);
  EXPECT_GT(a.rfm().frequency(), 5);
  EXPECT_GT(a.expected_purchases(), 0);
  EXPECT_GT(a.customer_value(), 0);
  EXPECT_GT(a.probability_alive(), 0.5);
  const v1::SegmentResponse longer = Ask(*seg, champion, &st, 365);
  EXPECT_GT(longer.expected_purchases(), a.expected_purchases());

  Ask(*seg, "nobody", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  Ask(*seg, "", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("user_id:", 0), 0u);
  Ask(*seg, champion, &st, 100000);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("horizon_days:", 0), 0u);

  // Retrain: by name, through the log; unknown names and online-only models
  // refused.
  v1::RetrainRequest retrain;
  v1::RetrainResponse retrained;
  retrain.set_model("segments");
  ASSERT_TRUE(admin->Retrain(Ctx().get(), retrain, &retrained).ok());
  v1::ReadEventsRequest read;
  read.set_from_sequence(retrained.sequence());
  read.set_limit(1);
  v1::ReadEventsResponse logged;
  ASSERT_TRUE(admin->ReadEvents(Ctx().get(), read, &logged).ok());
  ASSERT_EQ(logged.events_size(), 1);
  EXPECT_EQ(logged.events(0).event().type(), v1::RETRAIN);
  EXPECT_EQ(logged.events(0).event().payload(), "segments");
  retrain.set_model("nope");
  EXPECT_EQ(admin->Retrain(Ctx().get(), retrain, &retrained).error_code(), grpc::StatusCode::NOT_FOUND);
  retrain.set_model("fraud");
  EXPECT_EQ(admin->Retrain(Ctx().get(), retrain, &retrained).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  // Erasure goes through the log; once applied the customer is gone.
  const std::string erased = shop.users[1].user_id;
  v1::DeleteUserRequest del;
  del.set_user_id(erased);
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(admin->DeleteUser(Ctx().get(), del, &deleted).ok());
  EXPECT_GT(deleted.sequence(), summary.last_sequence());
  ASSERT_GE(WaitCaughtUp(*admin).applied_sequence(), deleted.sequence());
  Ask(*seg, erased, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);

  // Checkpointed on SIGTERM: the same answers after the restart. A refit may
  // still be running in the background; take the answer once none is.
  for (int i = 0; i < 600 && ModelCount(Status(*admin), "segments", "refit_running") != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ModelCount(Status(*admin), "segments", "refit_running"), 0u);
  const v1::SegmentResponse before = Ask(*seg, champion, &st);
  const int status = server->Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  server = std::make_unique<ServerProcess>(dir.path());
  seg = v1::Segmenter::NewStub(server->channel());
  const v1::SegmentResponse again = Ask(*seg, champion, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.segment_id(), before.segment_id());
  EXPECT_EQ(again.label(), before.label());
  EXPECT_DOUBLE_EQ(again.customer_value(), before.customer_value());
  Ask(*seg, erased, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace mercato::testing
