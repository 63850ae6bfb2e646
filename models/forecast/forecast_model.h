// Demand forecasting: daily demand per item and per category from the
// purchase and refund events, with a method chosen per series by a
// rolling-origin backtest (demand_methods.h) and inventory plans from the
// forecast's own errors (inventory_plan.h).
//
// Days are shop days: event time in the shop's time zone (a fixed UTC
// offset). The day of the latest shop time is open; a day closes when shop
// time passes its end. An event up to `late_days` days late corrects its
// day; later ones are counted (late_events) and ignored. Days without sales
// are zeros; a series keeps its last `history_days` days. Weekdays on which
// the whole shop sold nothing in each of the last four weeks, while it sold
// on others, are closed days of the calendar: zeros that are not
// intermittency, forecast as 0.
//
// Fits run in the background (core/background_fit.h): every `fit_every_days`
// closed days (the first once a series has four weeks), from the series as
// of the log position they start at, adopted where the log decides. A fit
// chooses each series' method and parameters and keeps its backtest errors
// as quantiles per horizon (ErrorProfiles). The method's state is stepped
// online through each day as it settles (leaves the late window, so that no
// event can change it again); a forecast steps a copy through the closed
// days still open to correction, so every closed day counts at once, at a
// cost independent of the history's length. A series without a fit yet, or
// with under four weeks, is forecast by seasonal naive with its own
// backtest; one with under a week, by its category's forecast scaled to the
// item's share.
//
// As each day settles, the model also scores the forecasts it gave for it
// one and seven days before (the ones every call got then, late
// corrections aside) against what sold: the rolling MASE over the last 28
// settled days, pooled over fitted series, is the gauge served_mase_1d and
// served_mase_7d.
//
// Threads: ForecastModel belongs to the learner thread (core/model.h);
// ForecastView is immutable and thread-safe, and shares its series with the
// model and other views (copy on write).
#ifndef MERCATO_MODELS_FORECAST_FORECAST_MODEL_H_
#define MERCATO_MODELS_FORECAST_FORECAST_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/background_fit.h"
#include "core/id_dictionary.h"
#include "core/model.h"
#include "core/row_block_matrix.h"
#include "models/forecast/demand_methods.h"
#include "models/forecast/inventory_plan.h"

namespace mercato::core {

inline constexpr char kForecastModelName[] = "forecast";

struct ForecastOptions {
  // The shop's time zone: an IANA name ("Europe/Berlin", with its daylight
  // saving rules, from the system's zoneinfo), or when empty a fixed offset
  // in minutes east of UTC.
  std::string time_zone;
  int utc_offset_minutes = 0;
  // Closed days an event may still correct.
  int late_days = 7;
  // Days kept per series.
  int history_days = 730;
  // A fit every this many closed days (0 = on request only).
  int fit_every_days = 7;
  // The backtest's window and longest horizon, in days.
  int backtest_window_days = 364, backtest_horizon_days = 56;
  bool background = true;
  // A fit is adopted at its FIT_DONE record or this many events after its
  // start (core/background_fit.h).
  uint64_t adopt_after_events = 200000;
};

// Days since 1970-01-01 in a time zone `utc_offset_minutes` east of UTC.
int64_t ShopDay(int64_t timestamp_ms, int utc_offset_minutes);

// The shop's days in the options' time zone.
class ShopCalendar {
 public:
  ShopCalendar() = default;  // UTC
  // INVALID_ARGUMENT naming `time_zone` for an unknown zone name.
  static absl::StatusOr<ShopCalendar> Of(const ForecastOptions& options);
  int64_t Day(int64_t timestamp_ms) const;

 private:
  std::optional<absl::TimeZone> zone_;
  int utc_offset_minutes_ = 0;
};

// Daily totals from `first_day` on, the last the open day: first the days
// settled (no event may change them any more), shared by every copy, then
// the recent ones, which events still change. An event copies only the
// recent days; a settled day is added once, when it settles.
struct DemandHistory {
  int64_t first_day = 0;
  std::shared_ptr<const std::vector<double>> settled;
  std::vector<double> recent;

  size_t settled_days() const { return settled ? settled->size() : 0; }
  size_t size() const { return settled_days() + recent.size(); }
  double operator[](size_t i) const {
    const size_t s = settled_days();
    return i < s ? (*settled)[i] : recent[i - s];
  }
};

// A series' fitted method, as the last fit chose it, with its state stepped
// through every settled day.
struct SeriesFit {
  DemandState state;
  bool intermittent = false;
  // The fit's backtest MASE, seasonal naive's, and the in-sample
  // seasonal-naive error they are scaled by.
  double mase = 0, naive_mase = 0, scale = 0;
  // Null until a fit.
  std::shared_ptr<const ErrorProfiles> errors;
  // The mean absolute one-day-ahead error over the backtest, and the same
  // over recent days (exponentially weighted, a 28-day half-life): their
  // ratio widens or narrows the intervals when the series has become more
  // or less volatile than the backtest saw.
  double typical_error = 0, recent_error = 0;
  // The forecast made 7 days ahead, by the weekday it is for (NaN = none).
  std::array<double, 7> week_ahead{};
};

// Forecast errors of the days settled on one day, scaled by their series'
// in-sample error, 1 and 7 days ahead.
struct ServedErrors {
  int64_t day = 0;
  double abs1 = 0, n1 = 0, abs7 = 0, n7 = 0;
};

// How demand responds to price, from the pricing model: a constant
// elasticity with its interval, and the prices its estimate saw.
struct PriceResponse {
  double elasticity = 0, ci_low = 0, ci_high = 0;
  double min_price_seen = 0, max_price_seen = 0;
};

struct ForecastQuery {
  // One of the two.
  std::string item_id, category;
  int horizon_days = 28;
  std::vector<double> levels = {0.8, 0.95};
  // Closed days of history to return with the answer.
  int history_days = 0;
  // An item's forecast at a planned price: the baseline (at the item's last
  // price) times (planned / last)^elasticity, the bounds by the interval's
  // ends of the elasticity; no response = no estimate, and no scaling.
  std::optional<double> planned_price;
  std::optional<PriceResponse> response;
};

struct ForecastAnswer {
  DemandForecast forecast;
  // The method that forecast ("category_profile" for an item forecast from
  // its category), its backtest MASE and seasonal naive's on the same
  // backtest, and the closed days of history behind it.
  std::string method;
  double mase = 0, naive_mase = 0;
  int history_days = 0;
  // The first forecast day.
  int64_t first_day = 0;
  // The last query.history_days closed days, oldest first.
  std::vector<double> history;
  // With a planned price: the price the baseline is at, the factor applied,
  // and whether the planned price lies outside the prices the elasticity
  // saw; `note` says when the forecast could not be scaled.
  double base_price = 0, price_factor = 1;
  bool price_outside_seen = false;
  std::string note;
};

struct InventoryAnswer {
  InventoryPlan plan;
  // As in ForecastAnswer.
  std::string method;
  double mase = 0, naive_mase = 0;
};

class ForecastView final : public ModelView {
 public:
  std::string Encode() const override;
  std::vector<std::pair<std::string, uint64_t>> Counts() const override;
  std::optional<RetrainInfo> LastRetrain() const override { return last_fit_; }
  std::optional<RunningRetrain> Running() const override { return running_; }
  std::vector<std::pair<std::string, double>> Gauges() const override;

  // NOT_FOUND for an unknown item or category; FAILED_PRECONDITION when it
  // has no closed day of sales history yet.
  absl::StatusOr<ForecastAnswer> Forecast(const ForecastQuery& query) const;
  // Scales `a` to the query's planned price.
  void AtPrice(const ForecastQuery& q, uint32_t item, ForecastAnswer& a) const;
  // The same errors for the item.
  absl::StatusOr<InventoryAnswer> Plan(std::string_view item_id,
                                       const InventoryRequest& request) const;
  const ClosedWeekdays& closed_weekdays() const { return closed_; }

 private:
  friend class ForecastModel;
  // The closed days of `h` (the open day left out) into `y`;
  // FAILED_PRECONDITION naming `what` when none of them sold.
  absl::Status ClosedSales(const DemandHistory* h, std::string_view what,
                           std::vector<double>* y) const;
  // What a series' closed days `s` are forecast from: its fit's state
  // stepped through the days since the settled ones, or without a fit
  // seasonal naive over the whole series with its own backtest.
  struct Basis {
    DemandState state;
    std::shared_ptr<const ErrorProfiles> errors;
    // The errors' multiplier (SeriesFit::recent_error / typical_error,
    // within 0.5..3).
    double spread = 1;
    double mase = 0, naive_mase = 0;
  };
  Basis BasisFor(const DemandSeries& s, const SeriesFit* fit) const;
  absl::StatusOr<ForecastAnswer> ForecastSeries(const DemandHistory* history, const SeriesFit* fit,
                                                const ForecastQuery& query,
                                                std::string_view what) const;

  ForecastOptions options_;
  IdDictionaryView items_, categories_;
  RowBlockView<std::shared_ptr<const DemandHistory>> item_series_, category_series_;
  RowBlockView<SeriesFit> item_fits_, category_fits_;
  // Per item: its category's row + 1 (0 = none), and its last price (0 =
  // none seen).
  RowBlockView<uint32_t> item_category_;
  RowBlockView<double> item_price_;
  std::shared_ptr<const DemandHistory> shop_;
  ClosedWeekdays closed_{};
  bool started_ = false;
  int64_t today_ = 0, settled_ = 0;
  uint64_t late_events_ = 0, fits_ = 0, days_since_fit_ = 0, fitted_series_ = 0;
  std::array<ServedErrors, 28> served_{};
  std::optional<RetrainInfo> last_fit_;
  std::optional<RunningRetrain> running_;
};

class ForecastModel final : public Model {
 public:
  explicit ForecastModel(ForecastOptions options = {});
  std::string_view name() const override { return kForecastModelName; }
  bool Apply(const Event& event) override;
  std::shared_ptr<const ModelView> Publish() override;
  absl::Status Decode(std::string_view bytes) override;
  FitGate Gate(uint64_t sequence) override;
  std::optional<uint64_t> FinishedFit() const override { return fit_.Finished(); }
  void FitDoneAt(uint64_t started, uint64_t sequence) override { fit_.DoneAt(started, sequence); }
  bool CanRetrain() const override { return true; }
  void Retrain() override;
  void Abandon() override { fit_.Abandon(); }

 private:
  // What a fit gives: the choice per item and per category row.
  struct Fitted {
    std::vector<std::optional<SeriesFit>> items, categories;
    // The first day the fits' states have not stepped.
    int64_t settled = 0;
    RetrainInfo run;
  };
  void AddDemand(const Event& event, double quantity);
  // Moves the days of `slot` before `to` to its settled days, keeping the
  // last history_days.
  void SettleHistory(std::shared_ptr<const DemandHistory>& slot, int64_t to) const;
  // Moves the open day to `day`, closing the days before it.
  void Advance(int64_t day);
  // Steps every fitted series through the days from settled_ to `to`.
  void Settle(int64_t to);
  void StartFit();
  void Adopt(Fitted fitted);
  // The row of an item or a category, every per-row table grown to it.
  uint32_t ItemRow(std::string_view item_id);
  uint32_t CategoryRow(std::string_view category);
  void AddTo(DemandHistory& h, int64_t day, double quantity) const;

  ForecastOptions options_;
  ShopCalendar calendar_;
  IdDictionary items_, categories_;
  RowBlockMatrix<std::shared_ptr<const DemandHistory>> item_series_, category_series_;
  RowBlockMatrix<SeriesFit> item_fits_, category_fits_;
  RowBlockMatrix<uint32_t> item_category_;
  RowBlockMatrix<double> item_price_;
  std::shared_ptr<const DemandHistory> shop_;
  ClosedWeekdays closed_{};
  // The open day, and the first day an event may still change.
  int64_t today_ = 0, settled_ = 0;
  bool started_ = false;
  uint64_t late_events_ = 0, fits_ = 0, days_since_fit_ = 0, fitted_series_ = 0;
  std::array<ServedErrors, 28> served_{};
  uint64_t position_ = 0;
  std::optional<RetrainInfo> last_fit_;
  BackgroundFit<Fitted> fit_;
};

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FORECAST_FORECAST_MODEL_H_
