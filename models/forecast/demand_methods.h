// Forecasting methods for one daily demand series, as pure functions:
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
// allows. Forecasts are never negative and are 0 on closed weekdays.
#ifndef MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_
#define MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

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

// The q-quantile (0..1) of `v` by linear interpolation; 0 when empty.
double Quantile(std::vector<double> v, double q);
// The same, reordering `v` (O(size)).
double QuantileInPlace(std::vector<double>& v, double q);

// The errors of `errors` (per horizon, as DemandBacktest keeps them) at
// horizon `h`, or at the longest horizon below it that has any, pooled with
// the horizons up to 3 days either side while fewer than 50; for a horizon
// beyond the one used, scaled by sqrt(h / that horizon).
std::vector<double> ErrorsNear(const std::vector<std::vector<double>>& errors, int h);

// A forecast with its bounds for each of `levels` (e.g. 0.8, 0.95): the
// point forecast plus the backtest's error quantiles at each horizon, never
// below 0.
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
DemandForecast ForecastWithIntervals(const DemandChoice& choice, const DemandSeries& s, int h,
                                     const std::vector<double>& levels);

}  // namespace mercato::core

#endif  // MERCATO_MODELS_FORECAST_DEMAND_METHODS_H_
