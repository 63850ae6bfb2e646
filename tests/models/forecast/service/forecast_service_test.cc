// Forecasting end to end: purchases through Ingest, ForecastDemand and
// PlanInventory answers, errors that name their field, and the same answer
// after SIGKILL.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "mercato/v1/forecasting.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int64_t kStart = 1704067200000;  // 2024-01-01

// 70 days of a steady seller ("mug", about 10 a day at 8, priced 7, 8 or 9
// with an elasticity of -2) and one sale of "pen".
void Publish(v1::Ingest::Stub& ingest) {
  std::mt19937_64 rng(5);
  v1::EventBatch batch;
  for (int d = 0; d < 70; ++d) {
    const double price = 7 + d % 3;
    const int n = std::poisson_distribution<int>((d % 7 == 5 ? 16 : 9) * std::pow(price / 8, -2))(rng);
    v1::Event* e = batch.add_events();
    e->set_event_id(absl::StrCat("mug-", d));
    e->set_type(v1::PURCHASE);
    e->set_user_id(absl::StrCat("u", d));
    e->set_item_id("mug");
    e->set_order_id(absl::StrCat("o", d));
    e->set_quantity(std::max(1, n));
    e->set_unit_price(price);
    e->set_timestamp_ms(kStart + d * kDayMs + 36000000);
  }
  v1::Event* pen = batch.add_events();
  pen->set_event_id("pen");
  pen->set_type(v1::PURCHASE);
  pen->set_user_id("u");
  pen->set_item_id("pen");
  pen->set_order_id("o-pen");
  pen->set_quantity(1);
  pen->set_unit_price(2);
  pen->set_timestamp_ms(kStart + 69 * kDayMs + 40000000);
  v1::PublishSummary summary;
  ASSERT_TRUE(ingest.PublishBatch(Ctx().get(), batch, &summary).ok());
}

TEST(ForecastingTest, ForecastsPlansRefusesAndSurvivesKill) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(dir.path());
  auto ingest = v1::Ingest::NewStub(server->channel());
  auto admin = v1::Admin::NewStub(server->channel());
  Publish(*ingest);
  // Everything applied and the fits the log started adopted: the answers
  // below are those of the whole log, also after a restart.
  for (int i = 0; i < 500; ++i) {
    const v1::ModelStatusResponse st = WaitCaughtUp(*admin);
    bool fitting = false;
    for (const v1::ModelInfo& m : st.models()) fitting |= m.retrain_running();
    if (!fitting && ModelCount(st, "forecast", "fits") > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto forecasting = v1::Forecasting::NewStub(server->channel());

  v1::ForecastDemandRequest req;
  req.set_item_id("mug");
  req.set_horizon_days(28);
  v1::ForecastDemandResponse f;
  ASSERT_TRUE(forecasting->ForecastDemand(Ctx().get(), req, &f).ok());
  ASSERT_EQ(f.mean_size(), 28);
  EXPECT_EQ(f.history_days(), 69);
  EXPECT_NEAR(f.total(), 28 * (9 * 6 + 16) / 7.0, 80);
  ASSERT_EQ(f.intervals_size(), 2);
  EXPECT_DOUBLE_EQ(f.intervals(0).level(), 0.8);
  // The bounds are the forecast plus the backtest's error quantiles, which
  // on ten weeks of history may all lie on one side of it.
  EXPECT_LT(f.intervals(1).total_lower(), f.intervals(0).total_lower());
  EXPECT_GT(f.intervals(1).total_upper(), f.intervals(0).total_upper());
  EXPECT_LT(f.intervals(0).total_lower(), f.intervals(0).total_upper());
  EXPECT_FALSE(f.method().empty());
  EXPECT_GT(f.backtest_mase(), 0);
  EXPECT_GT(f.seasonal_naive_mase(), 0);

  // At a planned price: scaled from the last price (7, on day 69) by the
  // estimated elasticity, the bounds widened by its interval.
  v1::ForecastDemandRequest priced = req;
  priced.set_planned_price(12);
  v1::ForecastDemandResponse at;
  ASSERT_TRUE(forecasting->ForecastDemand(Ctx().get(), priced, &at).ok());
  EXPECT_EQ(at.base_price(), 7);
  EXPECT_NEAR(at.price_elasticity(), -2, 0.5) << at.note();
  EXPECT_NEAR(at.price_factor(), std::pow(12.0 / 7, at.price_elasticity()), 1e-9);
  EXPECT_NEAR(at.total(), f.total() * at.price_factor(), 1e-6);
  EXPECT_TRUE(at.price_outside_seen());  // 7 to 9 seen
  EXPECT_LT(at.intervals(1).total_lower(), at.total());
  priced.set_planned_price(8);
  ASSERT_TRUE(forecasting->ForecastDemand(Ctx().get(), priced, &at).ok());
  EXPECT_FALSE(at.price_outside_seen());
  EXPECT_LT(at.price_factor(), 1);

  v1::PlanInventoryRequest plan;
  plan.set_item_id("mug");
  plan.set_on_hand(30);
  plan.set_lead_time_days(4);
  plan.set_lead_time_sd_days(1);
  plan.set_review_period_days(7);
  plan.set_cycle_service_level(0.95);
  plan.set_holding_cost_per_unit_year(2);
  plan.set_order_cost(40);
  v1::PlanInventoryResponse p;
  ASSERT_TRUE(forecasting->PlanInventory(Ctx().get(), plan, &p).ok());
  EXPECT_GT(p.safety_stock(), 0);
  EXPECT_NEAR(p.order_now(), p.order_up_to() - 30, 1e-9);
  EXPECT_TRUE(p.has_eoq());
  EXPECT_GT(p.stockout_probability(), 0.5);  // 30 on hand for about 110 over 11 days
  EXPECT_EQ(p.method(), f.method());  // the same series' method and backtest
  EXPECT_EQ(p.backtest_mase(), f.backtest_mase());
  EXPECT_EQ(p.seasonal_naive_mase(), f.seasonal_naive_mase());

  // Errors name their field.
  const auto code_of = [&](v1::ForecastDemandRequest r, const std::string& field,
                           grpc::StatusCode want) {
    v1::ForecastDemandResponse out;
    const grpc::Status s = forecasting->ForecastDemand(Ctx().get(), r, &out);
    EXPECT_EQ(s.error_code(), want) << field << ": " << s.error_message();
    EXPECT_EQ(s.error_message().rfind(field + ":", 0), 0u) << s.error_message();
  };
  v1::ForecastDemandRequest bad = req;
  bad.set_horizon_days(366);
  code_of(bad, "horizon_days", grpc::StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.add_interval_levels(1.5);
  code_of(bad, "interval_levels[0]", grpc::StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.set_category("kitchen");
  code_of(bad, "item_id", grpc::StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.set_planned_price(-1);
  code_of(bad, "planned_price", grpc::StatusCode::INVALID_ARGUMENT);
  bad = req;
  bad.set_item_id("ghost");
  code_of(bad, "item_id", grpc::StatusCode::NOT_FOUND);
  bad = req;
  bad.set_item_id("pen");  // sold only on the day still open
  code_of(bad, "item_id", grpc::StatusCode::FAILED_PRECONDITION);
  v1::PlanInventoryRequest both = plan;
  both.set_fill_rate(0.98);
  v1::PlanInventoryResponse out;
  const grpc::Status s = forecasting->PlanInventory(Ctx().get(), both, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("cycle_service_level:", 0), 0u) << s.error_message();

  server->Kill();
  server = std::make_unique<ServerProcess>(dir.path());
  forecasting = v1::Forecasting::NewStub(server->channel());
  v1::ForecastDemandResponse again;
  ASSERT_TRUE(forecasting->ForecastDemand(Ctx().get(), req, &again).ok());
  EXPECT_EQ(again.mean(0), f.mean(0));
  EXPECT_EQ(again.total(), f.total());
}

}  // namespace
}  // namespace mercato::testing
