// The forecasting model fed events as the learner feeds them: shop days,
// late events, closed weekdays, fits at day boundaries, answers, a new item
// forecast from its category, and checkpoints.
#include "models/forecast/forecast_model.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "testing/model_feed.h"

namespace mercato::core {
namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;
constexpr int64_t kStart = 1704067200000;  // 2024-01-01, a Monday (shop day 19723)

// Fits inline, adopted at the next event (a feed writes no FIT_DONE).
ForecastOptions Inline() {
  ForecastOptions o;
  o.background = false;
  o.adopt_after_events = 1;
  return o;
}

std::shared_ptr<const ForecastView> ViewOf(ForecastModel& model) {
  return std::dynamic_pointer_cast<const ForecastView>(model.Publish());
}

Event Purchase(const std::string& item, int64_t t, double quantity) {
  Event e;
  e.type = EventType::kPurchase;
  e.user_id = "u";
  e.item_id = item;
  e.timestamp_ms = t;
  e.quantity = quantity;
  e.unit_price = 10;
  return e;
}

Event ItemIn(const std::string& item, const std::string& category) {
  Item it;
  it.item_id = item;
  it.category_path = {"shop", category};
  return ItemUpdateEvent(it, kStart, "item/" + item);
}

// `days` days of Poisson demand with a weekly pattern for "mug" and "cup"
// (category "kitchen"); the shop is closed on Sundays.
void Feed(testkit::ModelFeed& feed, int days, uint64_t seed = 3) {
  static const double kWeekly[7] = {1.0, 0.9, 0.8, 1.0, 1.3, 1.6, 0};  // Monday first
  std::mt19937_64 rng(seed);
  feed.Apply(ItemIn("mug", "kitchen"));
  feed.Apply(ItemIn("cup", "kitchen"));
  for (int d = 0; d < days; ++d) {
    for (const auto& [item, base] : {std::pair<std::string, double>{"mug", 12}, {"cup", 5}}) {
      const int n = std::poisson_distribution<int>(base * kWeekly[d % 7])(rng);
      if (n > 0) feed.Apply(Purchase(item, kStart + d * kDayMs + 10 * 3600000, n));
    }
  }
}

TEST(ForecastModelTest, FitsAtDayBoundariesAndForecastsWithIntervals) {
  ForecastModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(feed, 140);
  const auto view = ViewOf(model);
  EXPECT_TRUE(view->closed_weekdays()[ShopDay(kStart + 6 * kDayMs, 0) % 7]);  // Sundays
  ForecastQuery q;
  q.item_id = "mug";
  q.horizon_days = 14;
  const absl::StatusOr<ForecastAnswer> a = view->Forecast(q);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->history_days, 138);  // the open day (the last Saturday) is not history yet
  EXPECT_TRUE(a->method == "ets_additive_trend" || a->method == "ets_damped_trend") << a->method;
  EXPECT_LT(a->mase, a->naive_mase);
  ASSERT_EQ(a->forecast.mean.size(), 14u);
  ASSERT_EQ(a->forecast.intervals.size(), 2u);
  for (int d = 0; d < 14; ++d) {
    const bool sunday = (a->first_day + d) % 7 == ShopDay(kStart + 6 * kDayMs, 0) % 7;
    EXPECT_EQ(a->forecast.mean[d] == 0, sunday) << d;
    EXPECT_LE(a->forecast.intervals[1].lower[d], a->forecast.intervals[0].lower[d]);
    EXPECT_GE(a->forecast.intervals[1].upper[d], a->forecast.intervals[0].upper[d]);
  }
  EXPECT_NEAR(a->forecast.total, 12 * (6.6 / 7) * 14, 25);
  uint64_t fits = 0;
  for (const auto& [name, n] : view->Counts()) fits += name == "fits" ? n : 0;
  EXPECT_EQ(fits, (138 - 28) / 7 + 1);  // from four weeks on, every seventh day

  InventoryRequest r;
  r.lead_time_days = 3;
  r.review_period_days = 7;
  r.cycle_service_level = 0.95;
  r.on_hand = 20;
  const absl::StatusOr<InventoryAnswer> plan = view->Plan("mug", r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_GT(plan->plan.safety_stock, 0);
  EXPECT_NEAR(plan->plan.order_now, plan->plan.order_up_to - 20, 1e-9);
}

// The closed days of `item` as the view has them, and the first one's day.
std::pair<std::vector<double>, int64_t> ClosedDaysOf(const ForecastView& view, const std::string& item) {
  ForecastQuery q;
  q.item_id = item;
  q.history_days = 100000;
  const absl::StatusOr<ForecastAnswer> a = view.Forecast(q);
  EXPECT_TRUE(a.ok()) << a.status();
  if (!a.ok()) return {};
  return {a->history, a->first_day - static_cast<int64_t>(a->history.size())};
}

TEST(ForecastModelTest, FittedStatesStepOnlineAsARunOverTheWholeSeriesWould) {
  ForecastOptions o = Inline();
  o.fit_every_days = 0;  // on request only
  ForecastModel model(o);
  testkit::ModelFeed feed(model);
  Feed(feed, 60);
  const auto [at_fit, first_day] = ClosedDaysOf(*ViewOf(model), "mug");
  const ClosedWeekdays closed = ViewOf(model)->closed_weekdays();
  model.Retrain();  // adopted at the next event
  std::mt19937_64 rng(11);
  const int64_t from = kStart + 60 * kDayMs + 10 * 3600000;
  for (int d = 0; d < 25; ++d) {
    // Sundays stay closed; every third day corrects the day before yesterday.
    const auto open = [](int day) { return (60 + day) % 7 != 6; };
    if (open(d)) feed.Apply(Purchase("mug", from + d * kDayMs, 5 + static_cast<double>(rng() % 20)));
    if (d >= 3 && d % 3 == 0 && open(d - 2)) feed.Apply(Purchase("mug", from + (d - 2) * kDayMs, 7));
  }
  const auto view = ViewOf(model);
  const auto [now, now_first_day] = ClosedDaysOf(*view, "mug");
  ASSERT_EQ(now_first_day, first_day);
  const DemandChoice c = ChooseDemandMethod({at_fit, first_day, closed}, o.backtest_window_days,
                                            o.backtest_horizon_days);
  const std::vector<double> expected = ForecastDemand(c.fit, {now, first_day, closed}, 21);
  ForecastQuery q;
  q.item_id = "mug";
  q.horizon_days = 21;
  const absl::StatusOr<ForecastAnswer> a = view->Forecast(q);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->method, DemandMethodName(c.fit.method));
  EXPECT_NEAR(a->mase, c.backtest.mase, 1e-12);
  for (int d = 0; d < 21; ++d) EXPECT_NEAR(a->forecast.mean[d], expected[d], 1e-9) << d;
}

TEST(ForecastModelTest, ScoresItsOwnForecastsOfEachSettledDay) {
  ForecastModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(feed, 140);
  std::map<std::string, double> gauges;
  for (const auto& [name, v] : ViewOf(model)->Gauges()) gauges[name] = v;
  ASSERT_TRUE(gauges.count("served_mase_1d") && gauges.count("served_mase_7d"));
  // Poisson demand around a weekly pattern: a forecast one day ahead errs by
  // about 0.8 of the Poisson deviation, seasonal naive's differences by
  // sqrt(2) of that, so MASE about 0.7; zero forecasts would give about 3.
  EXPECT_GT(gauges["served_mase_1d"], 0.5);
  EXPECT_LT(gauges["served_mase_1d"], 0.95);
  EXPECT_GT(gauges["served_mase_7d"], 0.5);
  EXPECT_LT(gauges["served_mase_7d"], 1.0);
  ForecastModel fresh(Inline());
  EXPECT_TRUE(ViewOf(fresh)->Gauges().empty());
}

TEST(ForecastModelTest, ShopDaysFollowTheTimeZoneAndItsDaylightSavingRules) {
  ForecastOptions o;
  o.time_zone = "Europe/Berlin";
  const absl::StatusOr<ShopCalendar> berlin = ShopCalendar::Of(o);
  ASSERT_TRUE(berlin.ok()) << berlin.status();
  const int64_t july1 = 1719792000000, jan10 = 1704844800000;  // 00:00 UTC
  const int64_t late_evening = 22 * 3600000 + 30 * 60000;      // 22:30 UTC
  // Summer time (UTC+2): 22:30 UTC is already the next day; winter (UTC+1): not yet.
  EXPECT_EQ(berlin->Day(july1 + late_evening), ShopDay(july1, 0) + 1);
  EXPECT_EQ(berlin->Day(jan10 + late_evening), ShopDay(jan10, 0));
  o.time_zone = "";
  o.utc_offset_minutes = 120;
  EXPECT_EQ(ShopCalendar::Of(o)->Day(jan10 + late_evening), ShopDay(jan10, 0) + 1);
  o.time_zone = "Mars/Olympus";
  EXPECT_TRUE(absl::IsInvalidArgument(ShopCalendar::Of(o).status()));
}

TEST(ForecastModelTest, LateEventsCorrectTheirDayWithinTheWindowOnly) {
  ForecastModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(feed, 30);
  const int64_t now = kStart + 29 * kDayMs + 12 * 3600000;
  feed.Apply(Purchase("mug", now - 3 * kDayMs, 1000));   // three days late: corrects
  feed.Apply(Purchase("mug", now - 20 * kDayMs, 1000));  // twenty: counted, ignored
  const auto view = ViewOf(model);
  uint64_t late = 0;
  for (const auto& [name, n] : view->Counts()) late += name == "late_events" ? n : 0;
  EXPECT_EQ(late, 1u);
  ForecastQuery q;
  q.item_id = "mug";
  q.horizon_days = 7;
  // Seasonal naive over the last week (four weeks of history, fitted at the
  // last day boundary without the correction): the corrected day shows.
  const absl::StatusOr<ForecastAnswer> a = view->Forecast(q);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_GT(*std::max_element(a->forecast.mean.begin(), a->forecast.mean.end()), 500);
}

TEST(ForecastModelTest, NewItemsBorrowTheirCategorysProfileAndErrorsSaySo) {
  ForecastModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(feed, 70);
  feed.Apply(ItemIn("bowl", "kitchen"));
  feed.Apply(Purchase("bowl", kStart + 67 * kDayMs, 4));
  feed.Apply(Purchase("bowl", kStart + 68 * kDayMs, 2));
  feed.Apply(ItemIn("lamp", "lights"));
  const auto view = ViewOf(model);
  ForecastQuery q;
  q.item_id = "bowl";
  q.horizon_days = 7;
  const absl::StatusOr<ForecastAnswer> a = view->Forecast(q);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->method, "category_profile");
  EXPECT_GT(a->forecast.total, 0);
  q.item_id = "lamp";
  EXPECT_TRUE(absl::IsFailedPrecondition(view->Forecast(q).status()));
  q.item_id = "ghost";
  EXPECT_TRUE(absl::IsNotFound(view->Forecast(q).status()));
  q.item_id = "";
  q.category = "kitchen";
  EXPECT_TRUE(view->Forecast(q).ok());
}

TEST(ForecastModelTest, CheckpointsRestoreTheSameAnswersAndLearning) {
  ForecastModel model(Inline());
  testkit::ModelFeed feed(model);
  Feed(feed, 60);
  const std::string bytes = ViewOf(model)->Encode();
  ForecastModel restored(Inline());
  ASSERT_TRUE(restored.Decode(bytes).ok());
  EXPECT_EQ(ViewOf(restored)->Encode(), bytes);
  const Event next = Purchase("cup", kStart + 61 * kDayMs, 3);
  Event stamped = next;
  stamped.sequence = 1000000;
  stamped.shop_time_ms = next.timestamp_ms;
  model.Apply(stamped);
  restored.Apply(stamped);
  EXPECT_EQ(ViewOf(restored)->Encode(), ViewOf(model)->Encode());
  EXPECT_FALSE(restored.Decode(bytes.substr(0, bytes.size() / 2)).ok());
  for (char format : {1, 2}) {  // before prices, before states: rebuilt from the log
    std::string old = bytes;
    old[0] = format;
    EXPECT_TRUE(absl::IsFailedPrecondition(restored.Decode(old)));
  }
  // A checkpoint from before any event, too: the first day counts as a start.
  ForecastModel empty(Inline()), from_empty(Inline());
  ASSERT_TRUE(from_empty.Decode(ViewOf(empty)->Encode()).ok());
  empty.Apply(stamped);
  from_empty.Apply(stamped);
  EXPECT_EQ(ViewOf(from_empty)->Encode(), ViewOf(empty)->Encode());
}

}  // namespace
}  // namespace mercato::core
