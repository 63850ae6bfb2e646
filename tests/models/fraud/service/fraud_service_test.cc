// Fraud.Score end to end: priors before any label, reason codes, bad input,
// a label for an unknown order, the same probability after SIGKILL and
// after SIGTERM; attributes and line items learned from labels, the rule
// that decided, and calibration in ModelStatus and Prometheus.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "mercato/v1/catalog.grpc.pb.h"
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
  for (int i = 0; i < 200 && (ModelCount(Status(*admin), "fraud", "early_labels") < 1 ||
                              ModelCount(Status(*admin), "fraud", "orders") < 2);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Held for a record that may still come.
  EXPECT_EQ(ModelCount(Status(*admin), "fraud", "early_labels"), 1u);
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

v1::Order Shopper(int i, const std::string& method, double device_score) {
  v1::Order o = UsualOrder(absl::StrCat("a-", i));
  o.set_user_id(absl::StrCat("shopper-", i));
  o.set_payment_fingerprint(absl::StrCat("card-", i));
  o.set_device_id(absl::StrCat("dev-", i));
  o.set_timestamp_ms(kNow + i * 1000);
  (*o.mutable_attributes())["payment_method"].set_text(method);
  (*o.mutable_attributes())["device_score"].set_number(device_score);
  v1::LineItem* line = o.add_line_items();
  line->set_item_id("phone");
  line->set_quantity(1);
  line->set_unit_price(59.90);
  return o;
}

void Label(v1::Ingest::Stub& ingest, const std::string& order_id, double value) {
  v1::EventBatch batch;
  v1::Event* label = batch.add_events();
  label->set_event_id("label-" + order_id);
  label->set_type(v1::FRAUD_LABEL);
  label->set_order_id(order_id);
  label->set_value(value);
  label->set_timestamp_ms(kNow + 3600000);
  v1::PublishSummary summary;
  ASSERT_TRUE(ingest.PublishBatch(Ctx().get(), batch, &summary).ok());
}

// Attributes and line items sent to Score reach the model: labels on orders
// paid in crypto teach it that crypto is risky, the reasons say so readably,
// and ModelStatus and /metrics show the calibration of the labelled orders.
TEST(FraudTest, AttributesAndLineItemsAreLearnedThroughTheApi) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto fraud = v1::Fraud::NewStub(server.channel());
  auto ingest = v1::Ingest::NewStub(server.channel());
  auto admin = v1::Admin::NewStub(server.channel());
  auto catalog = v1::Catalog::NewStub(server.channel());
  v1::UpsertItemsRequest items;
  v1::Item* phone = items.add_items();
  phone->set_item_id("phone");
  phone->set_price(59.90);
  phone->set_in_stock(true);
  phone->add_category_path("Electronics");
  v1::UpsertItemsResponse upserted;
  ASSERT_TRUE(catalog->UpsertItems(Ctx().get(), items, &upserted).ok());

  for (int i = 0; i < 200; ++i) {
    const bool crypto = i % 5 == 0;
    const v1::Order o = Shopper(i, crypto ? "crypto" : "card", 20 + i % 20);
    const v1::ScoreResponse s = Score(*fraud, o);
    EXPECT_EQ(s.decided_by().rfind("probability ", 0), 0u) << s.decided_by();
  }
  for (int i = 0; i < 500 && ModelCount(Status(*admin), "fraud", "orders") < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (int i = 0; i < 200; ++i) Label(*ingest, absl::StrCat("a-", i), i % 5 == 0 ? 1 : 0);
  const v1::ModelStatusResponse st = WaitCaughtUp(*admin);
  EXPECT_EQ(ModelCount(st, "fraud", "labels"), 200u);
  EXPECT_EQ(ModelCount(st, "fraud", "attribute_names"), 1u);  // device_score
  EXPECT_EQ(ModelCount(st, "fraud", "calibration_orders"), 200u);
  double brier = -1;
  for (const v1::ModelInfo& m : st.models()) {
    if (m.name() == "fraud" && m.gauges().contains("brier_score")) brier = m.gauges().at("brier_score");
  }
  EXPECT_GT(brier, 0);
  EXPECT_LT(brier, 0.25);
  const std::string metrics = HttpGet(server.metrics_port(), "/metrics");
  EXPECT_NE(metrics.find(R"(mercato_model_gauge{model="fraud",gauge="brier_score"})"),
            std::string::npos);

  const v1::ScoreResponse card = Score(*fraud, Shopper(1000, "card", 30));
  const v1::ScoreResponse crypto = Score(*fraud, Shopper(1001, "crypto", 30));
  EXPECT_GT(crypto.probability(), 2 * card.probability());
  ASSERT_GE(crypto.reasons_size(), 1);
  bool named = false;
  for (const v1::ReasonCode& r : crypto.reasons()) {
    named |= r.feature() == "attributes.payment_method=crypto" && r.contribution() > 0;
  }
  EXPECT_TRUE(named) << crypto.DebugString();

  // Bad attributes name their field.
  struct Case {
    v1::Order order;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({Shopper(2000, "card", 1), "attributes"});
  for (int i = 0; i < 65; ++i) {
    (*cases.back().order.mutable_attributes())[absl::StrCat("k", i)].set_number(i);
  }
  cases.push_back({Shopper(2001, "card", std::numeric_limits<double>::infinity()),
                   "attributes[device_score]"});
  cases.push_back({Shopper(2002, std::string(10240, 'x'), 1), "attributes[payment_method]"});
  cases.push_back({Shopper(2003, "card", 1), "attributes[empty]"});
  (*cases.back().order.mutable_attributes())["empty"];
  cases.push_back({Shopper(2004, "card", 1), "line_items[0].quantity"});
  cases.back().order.mutable_line_items(0)->set_quantity(std::nan(""));
  for (const Case& c : cases) {
    grpc::Status s;
    Score(*fraud, c.order, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u) << s.error_message();
  }
}

// With --fraud_decision=expected_loss, probability x amount decides, and the
// answer says so.
TEST(FraudTest, ExpectedLossDecidesWhenAsked) {
  TempDir dir;
  ServerProcess server(dir.path(), {"--fraud_decision=expected_loss", "--fraud_review_cost=1",
                                    "--fraud_decline_cost=5"});
  auto fraud = v1::Fraud::NewStub(server.channel());
  v1::Order small = UsualOrder("small");
  small.set_amount(5);
  v1::Order large = UsualOrder("large");
  large.set_amount(900000);
  const v1::ScoreResponse a = Score(*fraud, small), b = Score(*fraud, large);
  EXPECT_EQ(a.decision(), v1::APPROVE);
  EXPECT_EQ(a.decided_by().rfind("expected loss ", 0), 0u) << a.decided_by();
  EXPECT_EQ(b.decision(), v1::DECLINE);
  EXPECT_NE(b.decided_by().find(">= decline cost 5"), std::string::npos) << b.decided_by();
}

}  // namespace
}  // namespace mercato::testing
