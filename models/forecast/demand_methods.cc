#include "models/forecast/demand_methods.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

namespace mercato::core {
namespace {

constexpr int kWeek = 7;
// Errors a quantile is taken over, at least, when the neighbours allow.
constexpr size_t kEnoughErrors = 50;

int Weekday(int64_t day) { return static_cast<int>(((day % kWeek) + kWeek) % kWeek); }

double Sigmoid(double x) { return 1 / (1 + std::exp(-x)); }
double Logit(double p) { return std::log(p / (1 - p)); }

// Sum of squared one-step errors after the first week.
double OneStepSse(const DemandFit& fit, const DemandSeries& s) {
  DemandState f(fit, s);
  double sse = 0;
  for (size_t t = 0; t < s.y.size(); ++t) {
    const int wd = Weekday(s.first_day + static_cast<int64_t>(t));
    if (t >= kWeek && !s.closed[wd]) {
      const double e = s.y[t] - f.Ahead(1, wd, s.closed);
      sse += e * e;
    }
    f.Step(s.y[t], wd, s.closed);
  }
  return sse;
}

// Nelder-Mead minimisation of `f` from `x0`.
std::vector<double> NelderMead(const std::function<double(const std::vector<double>&)>& f,
                               std::vector<double> x0, int iterations) {
  const size_t n = x0.size();
  std::vector<std::vector<double>> p(n + 1, x0);
  for (size_t i = 0; i < n; ++i) p[i + 1][i] += 1.0;
  std::vector<double> v(n + 1);
  for (size_t i = 0; i <= n; ++i) v[i] = f(p[i]);
  for (int it = 0; it < iterations; ++it) {
    std::vector<size_t> order(n + 1);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
    const size_t best = order.front(), worst = order.back(), second = order[n - 1];
    std::vector<double> centre(n, 0.0);
    for (size_t i : order) {
      if (i == worst) continue;
      for (size_t k = 0; k < n; ++k) centre[k] += p[i][k] / static_cast<double>(n);
    }
    const auto along = [&](double t) {
      std::vector<double> x(n);
      for (size_t k = 0; k < n; ++k) x[k] = centre[k] + t * (p[worst][k] - centre[k]);
      return x;
    };
    std::vector<double> r = along(-1);
    const double fr = f(r);
    if (fr < v[best]) {
      std::vector<double> e = along(-2);
      const double fe = f(e);
      if (fe < fr) {
        p[worst] = e, v[worst] = fe;
      } else {
        p[worst] = r, v[worst] = fr;
      }
    } else if (fr < v[second]) {
      p[worst] = r, v[worst] = fr;
    } else {
      std::vector<double> c = along(0.5);
      const double fc = f(c);
      if (fc < v[worst]) {
        p[worst] = c, v[worst] = fc;
      } else {
        for (size_t i = 0; i <= n; ++i) {
          if (i == best) continue;
          for (size_t k = 0; k < n; ++k) p[i][k] = p[best][k] + 0.5 * (p[i][k] - p[best][k]);
          v[i] = f(p[i]);
        }
      }
    }
  }
  return p[std::min_element(v.begin(), v.end()) - v.begin()];
}

// ETS parameters from unconstrained coordinates: 0.01 < alpha < 0.99,
// beta < alpha / 4 (a slow trend), gamma < 1 - alpha, 0.8 < phi < 0.98.
DemandFit EtsFrom(DemandMethod method, const std::vector<double>& u) {
  DemandFit fit{method, {}};
  const double alpha = 0.01 + 0.98 * Sigmoid(u[0]);
  fit.params = {alpha, alpha / 4 * Sigmoid(u[1]), (1 - alpha) * Sigmoid(u[2]),
                method == DemandMethod::kEtsDampedTrend ? 0.8 + 0.18 * Sigmoid(u[3]) : 1.0};
  return fit;
}

}  // namespace

DemandState::DemandState(const DemandFit& fit, const DemandSeries& s) : fit_(fit) {
  const auto& y = s.y;
  const size_t week = std::min<size_t>(kWeek, y.size());
  double first = 0;
  for (size_t i = 0; i < week; ++i) first += y[i];
  first = week > 0 ? first / static_cast<double>(week) : 0;
  level_ = first;
  if (y.size() >= 2 * kWeek) {
    double second = 0;
    for (size_t i = kWeek; i < 2 * kWeek; ++i) second += y[i];
    trend_ = (second / kWeek - first) / kWeek;
  }
  for (size_t i = 0; i < week; ++i) {
    const int wd = Weekday(s.first_day + static_cast<int64_t>(i));
    season_[wd] = s.closed[wd] ? 0 : y[i] - first;
  }
  last_.fill(std::numeric_limits<double>::quiet_NaN());
}

void DemandState::Path(int next_wd, const ClosedWeekdays& closed, std::span<double> out) const {
  const bool ets = fit_.method == DemandMethod::kEtsAdditiveTrend ||
                   fit_.method == DemandMethod::kEtsDampedTrend;
  if (!ets) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = Ahead(static_cast<int>(i) + 1, next_wd, closed);
    return;
  }
  const double phi = fit_.method == DemandMethod::kEtsDampedTrend ? fit_.params[3] : 1.0;
  double damp = 0, power = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    damp += (power *= phi);
    const int wd = (next_wd + static_cast<int>(i)) % kWeek;
    out[i] = closed[wd] ? 0 : std::max(0.0, level_ + damp * trend_ + season_[wd]);
  }
}

double DemandState::Ahead(int h, int next_wd, const ClosedWeekdays& closed) const {
  const int wd = (next_wd + h - 1) % kWeek;
  if (closed[wd]) return 0;
  const auto& p = fit_.params;
  double f = 0;
  switch (fit_.method) {
    case DemandMethod::kSeasonalNaive:
      f = std::isnan(last_[wd]) ? (seen_ > 0 ? sum_ / seen_ : 0) : last_[wd];
      break;
    case DemandMethod::kEtsAdditiveTrend:
    case DemandMethod::kEtsDampedTrend: {
      const double phi = fit_.method == DemandMethod::kEtsDampedTrend ? p[3] : 1.0;
      double damp = 0, power = 1;
      for (int i = 0; i < h; ++i) damp += (power *= phi);
      f = level_ + damp * trend_ + season_[wd];
      break;
    }
    case DemandMethod::kCrostonSba:
      f = interval_ > 0 ? (1 - p[0] / 2) * size_ / interval_ : 0;
      break;
    case DemandMethod::kTsb:
      f = probability_ * size_;
      break;
  }
  return std::max(0.0, f);
}

void DemandState::Step(double y, int wd, const ClosedWeekdays& closed) {
  ++seen_;
  sum_ += y;
  last_[wd] = y;
  if (closed[wd]) return;
  const auto& p = fit_.params;
  switch (fit_.method) {
    case DemandMethod::kSeasonalNaive:
      break;
    case DemandMethod::kEtsAdditiveTrend:
    case DemandMethod::kEtsDampedTrend: {
      const double phi = fit_.method == DemandMethod::kEtsDampedTrend ? p[3] : 1.0;
      const double e = y - (level_ + phi * trend_ + season_[wd]);
      level_ += phi * trend_ + p[0] * e;
      trend_ = phi * trend_ + p[1] * e;
      season_[wd] += p[2] * e;
      break;
    }
    case DemandMethod::kCrostonSba:
      ++since_;
      if (y > 0) {
        if (size_ == 0) {
          size_ = y;
          interval_ = since_;
        } else {
          size_ += p[0] * (y - size_);
          interval_ += p[0] * (since_ - interval_);
        }
        since_ = 0;
      }
      break;
    case DemandMethod::kTsb:
      if (y > 0) size_ = size_ == 0 ? y : size_ + p[0] * (y - size_);
      probability_ += p[1] * ((y > 0 ? 1.0 : 0.0) - probability_);
      break;
  }
}

void DemandState::StepAll(std::span<const double> y, int first_wd, const ClosedWeekdays& closed) {
  for (size_t t = 0; t < y.size(); ++t) Step(y[t], static_cast<int>((first_wd + t) % kWeek), closed);
}

void DemandState::Encode(ByteWriter& w) const {
  w.U8(static_cast<uint8_t>(fit_.method));
  for (double p : fit_.params) w.F64(p);
  for (double v : {level_, trend_, size_, interval_, since_, probability_, sum_, seen_}) w.F64(v);
  for (double v : season_) w.F64(v);
  for (double v : last_) w.F64(v);
}

DemandState DemandState::Decode(ByteReader& r) {
  DemandState s;
  const uint8_t method = r.U8();
  if (method >= kNumDemandMethods) r.Invalidate();
  s.fit_.method = static_cast<DemandMethod>(method);
  for (double& p : s.fit_.params) p = r.F64();
  for (double* v : {&s.level_, &s.trend_, &s.size_, &s.interval_, &s.since_, &s.probability_,
                    &s.sum_, &s.seen_}) {
    *v = r.F64();
  }
  for (double& v : s.season_) v = r.F64();
  for (double& v : s.last_) v = r.F64();
  return s;
}

std::string_view DemandMethodName(DemandMethod m) {
  switch (m) {
    case DemandMethod::kSeasonalNaive:
      return "seasonal_naive";
    case DemandMethod::kEtsAdditiveTrend:
      return "ets_additive_trend";
    case DemandMethod::kEtsDampedTrend:
      return "ets_damped_trend";
    case DemandMethod::kCrostonSba:
      return "croston_sba";
    case DemandMethod::kTsb:
      return "tsb";
  }
  return "unknown";
}

double AverageDemandInterval(const DemandSeries& s) {
  double open = 0, demand = 0;
  for (size_t t = 0; t < s.y.size(); ++t) {
    if (s.closed[Weekday(s.first_day + static_cast<int64_t>(t))]) continue;
    ++open;
    demand += s.y[t] > 0;
  }
  return demand > 0 ? open / demand : std::numeric_limits<double>::infinity();
}

DemandFit FitDemandMethod(DemandMethod method, const DemandSeries& s) {
  switch (method) {
    case DemandMethod::kSeasonalNaive:
      return {method, {}};
    case DemandMethod::kEtsAdditiveTrend:
    case DemandMethod::kEtsDampedTrend: {
      const auto sse = [&](const std::vector<double>& u) { return OneStepSse(EtsFrom(method, u), s); };
      const std::vector<double> start = {Logit((0.2 - 0.01) / 0.98), Logit(0.2), Logit(0.1 / 0.8),
                                         Logit((0.95 - 0.8) / 0.18)};
      std::vector<double> u = NelderMead(
          sse, method == DemandMethod::kEtsDampedTrend ? start : std::vector(start.begin(), start.end() - 1),
          150);
      u.resize(4, 0.0);
      return EtsFrom(method, u);
    }
    case DemandMethod::kCrostonSba:
    case DemandMethod::kTsb: {
      DemandFit best{method, {0.1, 0.1, 0, 0}};
      double best_sse = std::numeric_limits<double>::infinity();
      for (double a : {0.02, 0.05, 0.1, 0.2, 0.3}) {
        for (double b : method == DemandMethod::kTsb ? std::vector<double>{0.02, 0.05, 0.1, 0.2}
                                                     : std::vector<double>{0}) {
          const DemandFit fit{method, {a, b, 0, 0}};
          const double sse = OneStepSse(fit, s);
          if (sse < best_sse) best_sse = sse, best = fit;
        }
      }
      return best;
    }
  }
  return {method, {}};
}

std::vector<double> ForecastDemand(const DemandFit& fit, const DemandSeries& s, int h) {
  DemandState f(fit, s);
  f.StepAll(s.y, Weekday(s.first_day), s.closed);
  std::vector<double> out(h);
  f.Path(Weekday(s.first_day + static_cast<int64_t>(s.y.size())), s.closed, out);
  return out;
}

DemandBacktest Backtest(const DemandFit& fit, const DemandSeries& s, int window, int horizon,
                        bool keep_errors) {
  DemandBacktest b;
  if (keep_errors) {
    b.errors.resize(horizon);
    b.cumulative.resize(horizon);
  }
  const size_t n = s.y.size();
  double scale = 0, square_scale = 0, scaled = 0;
  for (size_t t = kWeek; t < n; ++t) {
    const double d = s.y[t] - s.y[t - kWeek];
    scale += std::abs(d), square_scale += d * d, ++scaled;
  }
  scale = scaled > 0 ? std::max(scale / scaled, 1e-9) : 1e-9;
  square_scale = scaled > 0 ? std::max(square_scale / scaled, 1e-18) : 1e-18;
  const size_t first_origin = n > static_cast<size_t>(window) ? n - window : std::min<size_t>(n, 2 * kWeek);
  b.scale = scale;
  DemandState f(fit, s);
  double abs_error = 0, square_error = 0, count = 0;
  std::vector<double> path(horizon);
  for (size_t t = 0; t < n; ++t) {
    const int wd = Weekday(s.first_day + static_cast<int64_t>(t));
    if (t >= first_origin) {
      double cum = 0;
      const int ahead = static_cast<int>(std::min<size_t>(horizon, n - t));
      f.Path(wd, s.closed, std::span(path).first(ahead));
      for (int h = 1; h <= ahead; ++h) {
        const double e = s.y[t + h - 1] - path[h - 1];
        cum += e;
        if (keep_errors) {
          b.errors[h - 1].push_back(e);
          b.cumulative[h - 1].push_back(cum);
        }
        abs_error += std::abs(e);
        square_error += e * e;
        ++count;
      }
    }
    f.Step(s.y[t], wd, s.closed);
  }
  const double inf = std::numeric_limits<double>::infinity();
  b.mase = count > 0 ? abs_error / count / scale : inf;
  b.rmsse = count > 0 ? std::sqrt(square_error / count / square_scale) : inf;
  return b;
}

DemandChoice ChooseDemandMethod(const DemandSeries& s, int window, int horizon) {
  DemandChoice choice;
  choice.intermittent = AverageDemandInterval(s) >= kIntermittentInterval;
  choice.fit = {DemandMethod::kSeasonalNaive, {}};
  choice.backtest = Backtest(choice.fit, s, window, horizon);
  choice.naive_mase = choice.backtest.mase;
  // Four weeks at least before a smoothing model is trusted over the last week.
  if (s.y.size() < 4 * kWeek) return choice;
  const std::vector<DemandMethod> candidates =
      choice.intermittent
          ? std::vector<DemandMethod>{DemandMethod::kCrostonSba, DemandMethod::kTsb}
          : std::vector<DemandMethod>{DemandMethod::kEtsAdditiveTrend, DemandMethod::kEtsDampedTrend};
  const auto score = [&](const DemandBacktest& b) { return choice.intermittent ? b.rmsse : b.mase; };
  for (DemandMethod m : candidates) {
    const DemandFit fit = FitDemandMethod(m, s);
    DemandBacktest b = Backtest(fit, s, window, horizon);
    if (score(b) < score(choice.backtest)) {
      choice.fit = fit;
      choice.backtest = std::move(b);
    }
  }
  return choice;
}

std::vector<double> ErrorsNear(const std::vector<std::vector<double>>& errors, int h) {
  std::vector<double> out;
  // The longest horizon up to h with errors (a short backtest has none far
  // ahead), widened to its neighbours while they are few.
  int centre = std::min<int>(h, static_cast<int>(errors.size()));
  while (centre > 0 && errors[centre - 1].empty()) --centre;
  if (centre == 0) return out;
  const int last = static_cast<int>(errors.size());
  int wide = 0;
  for (; wide <= 3 && (wide == 0 || out.size() < kEnoughErrors); ++wide) {
    out.clear();
    for (int k = std::max(1, centre - wide); k <= std::min(last, centre + wide); ++k) {
      out.insert(out.end(), errors[k - 1].begin(), errors[k - 1].end());
    }
  }
  // Further ahead than that, errors grow as for a random walk.
  if (h > centre) {
    const double grow = std::sqrt(static_cast<double>(h) / centre);
    for (double& e : out) e *= grow;
  }
  return out;
}

ErrorProfile ErrorProfile::From(const std::vector<std::vector<double>>& errors) {
  ErrorProfile p;
  for (int h : kErrorHorizons) {
    if (h > static_cast<int>(errors.size()) || errors[h - 1].empty()) continue;
    std::vector<double> e = ErrorsNear(errors, h);
    std::sort(e.begin(), e.end());
    p.horizons_.push_back(h);
    for (double q : kErrorLevels) {
      const double pos = q * static_cast<double>(e.size() - 1);
      const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, e.size() - 1);
      p.quantiles_.push_back(static_cast<float>(e[lo] + (pos - static_cast<double>(lo)) * (e[hi] - e[lo])));
    }
  }
  return p;
}

void ErrorProfile::At(int h, std::span<double> out) const {
  constexpr size_t n = kErrorLevels.size();
  const auto row = [&](size_t i) { return std::span(quantiles_).subspan(i * n, n); };
  const size_t above = static_cast<size_t>(
      std::lower_bound(horizons_.begin(), horizons_.end(), h) - horizons_.begin());
  if (above == horizons_.size()) {
    // Further ahead than the backtest reached: errors grow as for a random walk.
    const double grow = std::sqrt(static_cast<double>(h) / horizons_.back());
    for (size_t k = 0; k < n; ++k) out[k] = grow * row(above - 1)[k];
    return;
  }
  if (horizons_[above] == h || above == 0) {
    for (size_t k = 0; k < n; ++k) out[k] = row(above)[k];
    return;
  }
  const double t = static_cast<double>(h - horizons_[above - 1]) /
                   static_cast<double>(horizons_[above] - horizons_[above - 1]);
  for (size_t k = 0; k < n; ++k) out[k] = row(above - 1)[k] + t * (row(above)[k] - row(above - 1)[k]);
}

double ErrorProfile::Quantile(int h, double q) const {
  if (empty()) return 0;
  std::array<double, kErrorLevels.size()> at;
  At(h, at);
  const size_t above = static_cast<size_t>(
      std::lower_bound(kErrorLevels.begin(), kErrorLevels.end(), q) - kErrorLevels.begin());
  if (above == 0) return at.front();
  if (above == at.size()) return at.back();
  const double t = (q - kErrorLevels[above - 1]) / (kErrorLevels[above] - kErrorLevels[above - 1]);
  return at[above - 1] + t * (at[above] - at[above - 1]);
}

void ErrorProfile::Points(int h, std::vector<std::pair<double, double>>* out) const {
  if (empty()) return;
  std::array<double, kErrorLevels.size()> at;
  At(h, at);
  // Each level stands for the probability between its midpoints with its
  // neighbours, so a quantile of the points at a level is that level's.
  for (size_t k = 0; k < at.size(); ++k) {
    const double from = k == 0 ? 0 : (kErrorLevels[k - 1] + kErrorLevels[k]) / 2;
    const double to = k + 1 == at.size() ? 1 : (kErrorLevels[k] + kErrorLevels[k + 1]) / 2;
    out->emplace_back(at[k], to - from);
  }
}

void ErrorProfile::Encode(ByteWriter& w) const {
  w.Varint(horizons_.size());
  for (int h : horizons_) w.Varint(static_cast<uint64_t>(h));
  for (float q : quantiles_) w.F32(q);
}

ErrorProfile ErrorProfile::Decode(ByteReader& r) {
  ErrorProfile p;
  const uint64_t n = r.Varint();
  if (n > kErrorHorizons.size()) r.Invalidate();
  for (uint64_t i = 0; i < n && r.status().ok(); ++i) {
    const uint64_t h = r.Varint();
    if (h == 0 || h > static_cast<uint64_t>(kErrorHorizons.back()) ||
        (!p.horizons_.empty() && h <= static_cast<uint64_t>(p.horizons_.back()))) {
      r.Invalidate();
    }
    p.horizons_.push_back(static_cast<int>(h));
  }
  for (uint64_t i = 0; i < n * kErrorLevels.size() && r.status().ok(); ++i) p.quantiles_.push_back(r.F32());
  if (!r.status().ok()) return {};
  return p;
}

ErrorProfiles ProfilesOf(const DemandBacktest& b) {
  return {ErrorProfile::From(b.errors), ErrorProfile::From(b.cumulative)};
}

DemandForecast WithIntervals(std::vector<double> mean, const ErrorProfiles& errors, double spread,
                             const ClosedWeekdays& closed, int first_wd,
                             const std::vector<double>& levels) {
  DemandForecast f;
  f.mean = std::move(mean);
  f.total = std::accumulate(f.mean.begin(), f.mean.end(), 0.0);
  const int h = static_cast<int>(f.mean.size());
  f.intervals.resize(levels.size());
  for (size_t l = 0; l < levels.size(); ++l) {
    DemandInterval& in = f.intervals[l];
    in.level = levels[l];
    const double low = (1 - in.level) / 2, high = (1 + in.level) / 2;
    for (int d = 1; d <= h; ++d) {
      // A closed day sells nothing, certainly.
      const bool shut = closed[(first_wd + d - 1) % kWeek];
      const double m = f.mean[d - 1];
      in.lower.push_back(shut ? 0 : std::max(0.0, m + spread * errors.daily.Quantile(d, low)));
      in.upper.push_back(shut ? 0 : std::max(0.0, m + spread * errors.daily.Quantile(d, high)));
    }
    in.total_lower = std::max(0.0, f.total + spread * errors.cumulative.Quantile(h, low));
    in.total_upper = std::max(0.0, f.total + spread * errors.cumulative.Quantile(h, high));
  }
  return f;
}

DemandForecast ForecastWithIntervals(const DemandChoice& choice, const DemandSeries& s, int h,
                                     const std::vector<double>& levels) {
  return WithIntervals(ForecastDemand(choice.fit, s, h), ProfilesOf(choice.backtest), 1, s.closed,
                       Weekday(s.first_day + static_cast<int64_t>(s.y.size())), levels);
}

}  // namespace mercato::core
