// Client-side helpers shared by the integration tests.
#ifndef MERCATO_TESTS_INTEGRATION_TEST_CLIENT_H_
#define MERCATO_TESTS_INTEGRATION_TEST_CLIENT_H_

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "clients/client_util.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "testing/demo_shop.h"

namespace mercato::testing {

inline std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 30) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

// Every event of the log, in order.
inline std::vector<v1::LoggedEvent> ReadWholeLog(v1::Admin::Stub& admin) {
  std::vector<v1::LoggedEvent> out;
  uint64_t from = 1;
  while (from != 0) {
    v1::ReadEventsRequest req;
    req.set_from_sequence(from);
    req.set_limit(10000);
    v1::ReadEventsResponse resp;
    grpc::Status s = admin.ReadEvents(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    out.insert(out.end(), resp.events().begin(), resp.events().end());
    from = resp.next_sequence();
  }
  return out;
}

inline v1::ModelStatusResponse Status(v1::Admin::Stub& admin) {
  v1::ModelStatusResponse resp;
  grpc::Status s = admin.ModelStatus(Ctx().get(), v1::ModelStatusRequest(), &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

// Waits until the served snapshot includes the whole log.
inline v1::ModelStatusResponse WaitCaughtUp(v1::Admin::Stub& admin, int seconds = 5) {
  v1::ModelStatusResponse st;
  for (int i = 0; i < seconds * 100; ++i) {
    st = Status(admin);
    if (st.ready() && st.applied_sequence() == st.log_sequence()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return st;
}

// Publishes a demo shop of `users` customers, `items` products and `days`
// of history, and waits until it is served.
inline void LoadShop(const std::shared_ptr<grpc::Channel>& channel, int users, int items,
                     int days) {
  core::DemoShopOptions d;
  d.users = users;
  d.items = items;
  d.days = days;
  v1::PublishSummary summary;
  ASSERT_TRUE(clients::LoadDemoShop(*channel, core::GenerateDemoShop(d), 5000, &summary).ok());
  WaitCaughtUp(*v1::Admin::NewStub(channel), 30);
}

// The count `name` that model `model` reports in `status`; 0 when absent.
inline uint64_t ModelCount(const v1::ModelStatusResponse& status, const std::string& model,
                           const std::string& name) {
  for (const auto& m : status.models()) {
    if (m.name() == model && m.counts().contains(name)) return m.counts().at(name);
  }
  return 0;
}

}  // namespace mercato::testing

#endif  // MERCATO_TESTS_INTEGRATION_TEST_CLIENT_H_
