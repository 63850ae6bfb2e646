// Forecasting methods for one daily demand series:
//   - seasonal naive (the week before, repeated);
//   - exponential smoothing with additive error, additive or damped trend
//     and weekly additive seasonality (Hyndman et al. 2008, ETS(A,A,A) and
//     ETS(A,Ad,A)), parameters fitted by maximum likelihood (least squares
//     of the one-step errors under Gaussian errors) with Nelder-Mead;
//   - Croston with the Syntetos-Boylan correction, and TSB (Teunter,
//     Syntetos and Babai 2011), which lets the demand probability decay when
//     an item stops selling; both skip the shop's closed weekdays;
// a rolling-origin backtest that measures each by MASE (scaled by the
// in-sample seasonal-naive error) and keeps its errors per horizon; and the
// choice of the method with the lowest MASE among those the series' class
// allows. A method's state (DemandState) is stepped a day at a time, so a
// model keeps it current online; a backtest's errors are kept as quantiles
// per horizon (ErrorProfile), so a forecast's intervals need no backtest of
// their own. Forecasts are never negative and are 0 on closed weekdays.
#ifndef MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_
#define MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "core/bytes.h"

namespace mercato::core {

enum class DemandMethod : uint8_t {
  kSeasonalNaive = 0,
  kEtsAdditiveTrend = 1,
  kEtsDampedTrend = 2,
  kCrostonSba = 3,
  kTsb = 4,
};
inline constexpr int kNumDemandMethods = 5;
std::string_view DemandMethodName(DemandMethod m);

// Weekdays (day index mod 7) the shop is closed on.
using ClosedWeekdays = std::array<bool, 7>;

// A method with its parameters: ETS alpha, beta, gamma, phi; Croston alpha;
// TSB alpha (size) and beta (probability).
struct DemandFit {
  DemandMethod method = DemandMethod::kSeasonalNaive;
  std::array<double, 4> params{};
};

// `y` are daily totals, y[0] on day `first_day` (whose weekday is
// first_day mod 7).
struct DemandSeries {
  std::span<const double> y;
  int64_t first_day = 0;
  ClosedWeekdays closed{};
};

// A method's state after the days stepped into it. Initialised from the
// series' first two weeks (level, trend, weekday profile), then stepped from
// its first day on.
class DemandState {
 public:
  DemandState() = default;
  DemandState(const DemandFit& fit, const DemandSeries& s);
  const DemandFit& fit() const { return fit_; }

  // Takes in the actual `y` of a day on weekday `wd`.
  void Step(double y, int wd, const ClosedWeekdays& closed);
  // Steps every day of `y`, the first on weekday `first_wd`.
  void StepAll(std::span<const double> y, int first_wd, const ClosedWeekdays& closed);
  // The forecast `h` days ahead when the next day falls on weekday `next_wd`.
  double Ahead(int h, int next_wd, const ClosedWeekdays& closed) const;
  // The forecasts 1..out.size() days ahead, in one pass.
  void Path(int next_wd, const ClosedWeekdays& closed, std::span<double> out) const;

  void Encode(ByteWriter& w) const;
  // Invalidates `r` on a bad method.
  static DemandState Decode(ByteReader& r);

 private:
  DemandFit fit_;
  double level_ = 0, trend_ = 0;
  std::array<double, 7> season_{}, last_{};
  double size_ = 0, interval_ = 0, since_ = 0, probability_ = 0.5;
  double sum_ = 0, seen_ = 0;
};

// The mean gap between days with demand, counting open days only.
double AverageDemandInterval(const DemandSeries& s);
// Syntetos and Boylan's cut-off: intermittent from an average gap of 1.32.
inline constexpr double kIntermittentInterval = 1.32;

// Parameters of `method` fitted to `s`.
DemandFit FitDemandMethod(DemandMethod method, const DemandSeries& s);

// Point forecasts of the `h` days after the series ends.
std::vector<double> ForecastDemand(const DemandFit& fit, const DemandSeries& s, int h);

// A rolling-origin backtest over the last `window` days: a forecast of up to
// `horizon` days from every origin, with the parameters given.
struct DemandBacktest {
  // The in-sample mean absolute seasonal-naive (lag 7) difference.
  double scale = 0;
  // Mean absolute error over every origin and horizon, divided by the
  // in-sample mean absolute seasonal-naive (lag 7) difference.
  double mase = 0;
  // The same with squared errors (root mean squared scaled error), which,
  // unlike MASE, does not favour forecasting zero on intermittent series.
  double rmsse = 0;
  // errors[h - 1]: actual minus forecast at horizon h, over the origins.
  std::vector<std::vector<double>> errors;
  // cumulative[h - 1]: the same for the total of days 1..h.
  std::vector<std::vector<double>> cumulative;
};
// Without `keep_errors`, only the MASE and RMSSE.
DemandBacktest Backtest(const DemandFit& fit, const DemandSeries& s, int window, int horizon,
                        bool keep_errors = true);

// The method for `s`: too short a history gives seasonal naive; otherwise
// the lowest backtest MASE among the smooth methods (seasonal naive and both
// ETS), or, for an intermittent series, the lowest RMSSE among seasonal
// naive, Croston-SBA and TSB.
struct DemandChoice {
  DemandFit fit;
  DemandBacktest backtest;
  // Seasonal naive's MASE over the same backtest.
  double naive_mase = 0;
  bool intermittent = false;
};
DemandChoice ChooseDemandMethod(const DemandSeries& s, int window, int horizon);

// The errors of `errors` (per horizon, as DemandBacktest keeps them) at
// horizon `h`, or at the longest horizon below it that has any, pooled with
// the horizons up to 3 days either side while fewer than 50; for a horizon
// beyond the one used, scaled by sqrt(h / that horizon).
std::vector<double> ErrorsNear(const std::vector<std::vector<double>>& errors, int h);

// The distribution of a backtest's errors at every horizon, kept as its
// quantiles at kErrorLevels for the horizons of kErrorHorizons (each from
// ErrorsNear): linear between those levels and those horizons, the
// outermost level beyond them, and beyond the longest horizon with errors
// scaled by sqrt(h / that horizon). A few KB per series, whatever the
// backtest's size.
class ErrorProfile {
 public:
  static ErrorProfile From(const std::vector<std::vector<double>>& errors);
  bool empty() const { return horizons_.empty(); }
  // The q-quantile (0..1) of the error `h` (>= 1) days ahead; 0 when empty.
  double Quantile(int h, double q) const;
  // The distribution `h` days ahead as (error, probability) points, sorted,
  // appended to `out`.
  void Points(int h, std::vector<std::pair<double, double>>* out) const;

  void Encode(ByteWriter& w) const;
  static ErrorProfile Decode(ByteReader& r);

 private:
  // The quantiles at horizon `h` into `out` (kErrorLevels.size() values).
  void At(int h, std::span<double> out) const;
  std::vector<int> horizons_;
  std::vector<float> quantiles_;  // horizons_.size() rows of kErrorLevels
};
inline constexpr std::array<double, 25> kErrorLevels = {
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6,    0.7,   0.8,   0.85, 0.9,   0.925, 0.95, 0.975, 0.99, 0.995, 0.999, 0.9995};
inline constexpr std::array<int, 15> kErrorHorizons = {1,  2,  3,  4,  5,  6,  7, 10,
                                                       14, 21, 28, 35, 42, 49, 56};

// A backtest's errors per day and of the running total.
struct ErrorProfiles {
  ErrorProfile daily, cumulative;
};
ErrorProfiles ProfilesOf(const DemandBacktest& b);

// A forecast with its bounds for each of `levels` (e.g. 0.8, 0.95): the
// point forecast plus the error quantiles at each horizon, never below 0.
struct DemandInterval {
  double level = 0;
  std::vector<double> lower, upper;
  double total_lower = 0, total_upper = 0;
};
struct DemandForecast {
  std::vector<double> mean;
  double total = 0;
  std::vector<DemandInterval> intervals;
};
// `mean` (from the day on weekday `first_wd` on) with its bounds, the
// errors multiplied by `spread`.
DemandForecast WithIntervals(std::vector<double> mean, const ErrorProfiles& errors, double spread,
                             const ClosedWeekdays& closed, int first_wd,
                             const std::vector<double>& levels);
// The choice's forecast of the `h` days after `s`, with its bounds.
DemandForecast ForecastWithIntervals(const DemandChoice& choice, const DemandSeries& s, int h,
                                     const std::vector<double>& levels);

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_
