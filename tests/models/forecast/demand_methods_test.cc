// The forecasting methods against planted series: weekly patterns with
// trends, intermittent demand, an item that stops selling, a closed weekday.
#include "models/forecast/demand_methods.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

namespace mercato::core {
namespace {

constexpr int kTrain = 364, kHeldOut = 56, kHorizon = 56, kWindow = 112;

// Poisson draws around `mean(t)` for kTrain + kHeldOut days from day 0 (a
// Thursday: 1970-01-01).
template <class Mean>
std::vector<double> Draw(uint64_t seed, Mean mean) {
  std::mt19937_64 rng(seed);
  std::vector<double> y;
  for (int t = 0; t < kTrain + kHeldOut; ++t) {
    const double m = std::max(0.0, mean(t));
    y.push_back(m > 0 ? static_cast<double>(std::poisson_distribution<int>(m)(rng)) : 0.0);
  }
  return y;
}

const double kWeekly[7] = {1.0, 0.9, 0.8, 1.0, 1.3, 1.6, 1.4};

struct HeldOut {
  double mase;     // held-out MAE over the in-sample seasonal-naive MAE
  double cover80, cover95;
  DemandChoice choice;
};

HeldOut Evaluate(const std::vector<double>& y, ClosedWeekdays closed = {}) {
  const DemandSeries train{std::span(y).first(kTrain), 0, closed};
  HeldOut r;
  r.choice = ChooseDemandMethod(train, kWindow, kHorizon);
  const DemandForecast f = ForecastWithIntervals(r.choice, train, kHeldOut, {0.8, 0.95});
  double scale = 0, err = 0, in80 = 0, in95 = 0;
  for (int t = 7; t < kTrain; ++t) scale += std::abs(y[t] - y[t - 7]);
  scale /= kTrain - 7;
  for (int d = 0; d < kHeldOut; ++d) {
    const double actual = y[kTrain + d];
    err += std::abs(actual - f.mean[d]);
    in80 += f.intervals[0].lower[d] <= actual && actual <= f.intervals[0].upper[d];
    in95 += f.intervals[1].lower[d] <= actual && actual <= f.intervals[1].upper[d];
  }
  r.mase = err / kHeldOut / scale;
  r.cover80 = in80 / kHeldOut;
  r.cover95 = in95 / kHeldOut;
  return r;
}

TEST(DemandMethodsTest, SmoothWeeklySeriesBeatSeasonalNaiveWithCalibratedIntervals) {
  double mase = 0, cover80 = 0, cover95 = 0;
  const int items = 40;
  for (int i = 0; i < items; ++i) {
    const double base = 8 + 4 * (i % 5), slope = (i % 3 - 1) * 0.01 * base;
    const std::vector<double> y = Draw(100 + i, [&](int t) {
      return (base + slope * t / 7) * kWeekly[t % 7];
    });
    const HeldOut r = Evaluate(y);
    EXPECT_FALSE(r.choice.intermittent) << i;
    mase += r.mase / items;
    cover80 += r.cover80 / items;
    cover95 += r.cover95 / items;
  }
  std::printf("smooth: mean held-out MASE %.3f, 80%% interval covers %.3f, 95%% covers %.3f\n",
              mase, cover80, cover95);
  EXPECT_LT(mase, 0.8);
  EXPECT_GE(cover80, 0.75);
  EXPECT_LE(cover80, 0.85);
  EXPECT_GE(cover95, 0.91);
  EXPECT_LE(cover95, 0.98);
}

TEST(DemandMethodsTest, IntermittentSeriesGetCrostonOrTsb) {
  int chosen = 0;
  for (int i = 0; i < 20; ++i) {
    const std::vector<double> y = Draw(200 + i, [](int) { return 0.3; });
    const HeldOut r = Evaluate(y);
    EXPECT_TRUE(r.choice.intermittent) << i;
    chosen += r.choice.fit.method == DemandMethod::kCrostonSba ||
              r.choice.fit.method == DemandMethod::kTsb;
  }
  EXPECT_GE(chosen, 15);
}

TEST(DemandMethodsTest, TsbForecastsFadeWhenAnItemStopsSelling) {
  std::vector<double> y = Draw(300, [](int t) { return t < kTrain - 90 ? 0.5 : 0.0; });
  const DemandSeries s{std::span(y).first(kTrain), 0, {}};
  const DemandFit tsb = FitDemandMethod(DemandMethod::kTsb, s);
  const DemandFit croston = FitDemandMethod(DemandMethod::kCrostonSba, s);
  const double after_tsb = ForecastDemand(tsb, s, 1)[0], after_croston = ForecastDemand(croston, s, 1)[0];
  EXPECT_LT(after_tsb, 0.05);
  EXPECT_GT(after_croston, 0.2);  // Croston keeps its last rate
  const DemandChoice c = ChooseDemandMethod(s, kWindow, kHorizon);
  EXPECT_NE(c.fit.method, DemandMethod::kCrostonSba);
  EXPECT_LT(ForecastDemand(c.fit, s, 7)[6], 0.05);
}

// A steady seller in a shop closed on Sundays: the closed days are zeros of
// the calendar, not intermittency, and are forecast as 0.
TEST(DemandMethodsTest, ClosedWeekdaysAreNotIntermittency) {
  ClosedWeekdays closed{};
  closed[3] = true;  // day 3 is a Sunday when day 0 is a Thursday
  const std::vector<double> y = Draw(400, [](int t) { return t % 7 == 3 ? 0.0 : 1.6; });
  const DemandSeries open_days{std::span(y).first(kTrain), 0, closed};
  EXPECT_LT(AverageDemandInterval(open_days), kIntermittentInterval);
  const DemandSeries blind{std::span(y).first(kTrain), 0, {}};
  EXPECT_GE(AverageDemandInterval(blind), 1.25);  // nearly intermittent without the calendar
  const HeldOut r = Evaluate(y, closed);
  EXPECT_FALSE(r.choice.intermittent);
  const DemandForecast f = ForecastWithIntervals(r.choice, open_days, 14, {0.95});
  for (int d = 0; d < 14; ++d) {
    if ((kTrain + d) % 7 == 3) {
      EXPECT_EQ(f.mean[d], 0);
      EXPECT_EQ(f.intervals[0].upper[d], 0);
    } else {
      EXPECT_GT(f.mean[d], 0.5);
    }
  }
}

TEST(DemandMethodsTest, ShortHistoryGetsSeasonalNaive) {
  const std::vector<double> y = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
  const DemandSeries s{y, 0, {}};
  const DemandChoice c = ChooseDemandMethod(s, kWindow, 7);
  EXPECT_EQ(c.fit.method, DemandMethod::kSeasonalNaive);
  // Day 10 falls on the weekday of day 3.
  EXPECT_EQ(ForecastDemand(c.fit, s, 3), (std::vector<double>{1, 5, 9}));
}

}  // namespace
}  // namespace mercato::core
