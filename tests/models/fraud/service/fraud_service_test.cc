// Fraud.Score end to end: priors before any label, reason codes, bad input,
// a label for an unknown order, and the same probability after SIGKILL and
// after SIGTERM.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <limits>
#include <thread>

#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

constexpr int64_t kNow = 1732280000000;

v1::Order UsualOrder(const std::string& id) {
  v1::Order o;
  o.set_order_id(id);
  o.set_user_id("alice");
  o.set_amount(59.90);
  o.set_currency("EUR");
  o.set_payment_fingerprint("card-alice");
  o.set_billing_country("DE");
  o.set_shipping_country("DE");
  o.set_ip_country("DE");
  o.set_device_id("dev-alice");
  o.set_shipping_address_hash("addr-alice");
  o.set_account_created_ms(kNow - 400LL * 24 * 3600 * 1000);
  o.set_timestamp_ms(kNow);
  return o;
}

v1::ScoreResponse Score(v1::Fraud::Stub& stub, const v1::Order& o, grpc::Status* status = nullptr) {
  v1::ScoreResponse resp;
  grpc::Status s = stub.Score(Ctx().get(), o, &resp);
  if (status)
    *status = s;
  else
    EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

TEST(FraudTest, ScoresExplainsRejectsAndSurvivesRestarts) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(dir.path());
  auto fraud = v1::Fraud::NewStub(server->channel());
  const v1::ScoreResponse usual = Score(*fraud, UsualOrder("o-1"));
  v1::Order risky = UsualOrder("o-2");
  risky.set_user_id("mallory");
  risky.set_amount(1900);
  risky.set_account_created_ms(kNow - 600000);
  risky.set_shipping_country("NG");
  risky.set_ip_country("NG");
  const v1::ScoreResponse bad = Score(*fraud, risky);
  EXPECT_LT(usual.probability(), 0.1);
  EXPECT_EQ(usual.decision(), v1::APPROVE);
  EXPECT_GT(bad.probability(), 0.5);
  EXPECT_NE(bad.decision(), v1::APPROVE);
  ASSERT_GE(bad.reasons_size(), 1);
  EXPECT_FALSE(bad.reasons(0).feature().empty());
  EXPECT_GT(bad.reasons(0).contribution(), 0);

  struct Case {
    v1::Order order;
    std::string field;
  };
  std::vector<Case> cases;
  for (double amount : {-5.0, std::numeric_limits<double>::quiet_NaN()}) {
    cases.push_back({UsualOrder("x"), "amount"});
    cases.back().order.set_amount(amount);
  }
  for (const char* currency : {"XYZ", "euro", ""}) {
    cases.push_back({UsualOrder("x"), "currency"});
    cases.back().order.set_currency(currency);
  }
  cases.push_back({UsualOrder(""), "order_id"});
  cases.push_back({UsualOrder("x"), "user_id"});
  cases.back().order.clear_user_id();
  cases.push_back({UsualOrder("x"), "ip_country"});
  cases.back().order.set_ip_country("Germany");
  for (const Case& c : cases) {
    grpc::Status s;
    Score(*fraud, c.order, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
  }

  // A label for an order never scored is counted; nothing breaks.
  auto ingest = v1::Ingest::NewStub(server->channel());
  v1::EventBatch batch;
  v1::Event* label = batch.add_events();
  label->set_event_id("label-ghost");
  label->set_type(v1::FRAUD_LABEL);
  label->set_order_id("ghost");
  label->set_value(1);
  label->set_timestamp_ms(kNow);
  v1::PublishSummary summary;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &summary).ok());
  auto admin = v1::Admin::NewStub(server->channel());
  for (int i = 0; i < 200 && (ModelCount(Status(*admin), "fraud", "unknown_order_labels") < 1 ||
                              ModelCount(Status(*admin), "fraud", "orders") < 2);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(ModelCount(Status(*admin), "fraud", "unknown_order_labels"), 1u);
  EXPECT_EQ(ModelCount(Status(*admin), "fraud", "orders"), 2u);  // the scored orders are in the log

  // The same order after SIGKILL (replayed) and after SIGTERM (checkpoint).
  server->Kill();
  server = std::make_unique<ServerProcess>(dir.path());
  fraud = v1::Fraud::NewStub(server->channel());
  EXPECT_EQ(Score(*fraud, risky).probability(), bad.probability());
  const int status = server->Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  server = std::make_unique<ServerProcess>(dir.path());
  fraud = v1::Fraud::NewStub(server->channel());
  EXPECT_EQ(Score(*fraud, risky).probability(), bad.probability());
  EXPECT_EQ(Score(*fraud, UsualOrder("o-1")).probability(), usual.probability());
}

// A label sent again for the same order (a new event id) is acknowledged
// with a note and counted; a different one is a correction.
TEST(FraudTest, RepeatedAndChangedLabelsAreNotedAndCounted) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto fraud = v1::Fraud::NewStub(server.channel());
  auto ingest = v1::Ingest::NewStub(server.channel());
  auto admin = v1::Admin::NewStub(server.channel());
  Score(*fraud, UsualOrder("o-label"));
  for (int i = 0; i < 500 && ModelCount(Status(*admin), "fraud", "orders") < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto send = [&](const std::string& id, double value) {
    v1::EventBatch batch;
    v1::Event* label = batch.add_events();
    label->set_event_id(id);
    label->set_type(v1::FRAUD_LABEL);
    label->set_order_id("o-label");
    label->set_value(value);
    label->set_timestamp_ms(kNow + 1000);
    v1::PublishSummary summary;
    EXPECT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &summary).ok());
    WaitCaughtUp(*admin);
    return summary;
  };
  EXPECT_EQ(send("label-1", 1).notes_size(), 0);
  const v1::PublishSummary repeat = send("label-2", 1);
  ASSERT_EQ(repeat.notes_size(), 1);
  EXPECT_EQ(repeat.notes(0).event_id(), "label-2");
  EXPECT_NE(repeat.notes(0).note().find("a repeat"), std::string::npos) << repeat.notes(0).note();
  const v1::PublishSummary change = send("label-3", 0);
  ASSERT_EQ(change.notes_size(), 1);
  EXPECT_NE(change.notes(0).note().find("corrects"), std::string::npos) << change.notes(0).note();
  const v1::ModelStatusResponse st = Status(*admin);
  EXPECT_EQ(ModelCount(st, "fraud", "labels"), 1u);
  EXPECT_EQ(ModelCount(st, "fraud", "repeated_labels"), 1u);
  EXPECT_EQ(ModelCount(st, "fraud", "changed_labels"), 1u);
}

}  // namespace
}  // namespace mercato::testing
