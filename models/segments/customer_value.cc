#include "models/segments/customer_value.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace mercato::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Gauss's hypergeometric 2F1(a, b; c; z) for 0 <= z < 1, by its series.
double Hyp2F1(double a, double b, double c, double z) {
  double term = 1, sum = 1;
  for (int n = 0; n < 100000; ++n) {
    term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z;
    sum += term;
    if (std::abs(term) < 1e-14 * std::abs(sum)) break;
  }
  return sum;
}

// The log-likelihood's mean over `data`, negated for minimising, of
// parameters given as logarithms (so that the search is unconstrained).
template <class Params, class Data, class LogLik, class Make>
double MeanNegLogLik(const std::vector<double>& log_params, const std::vector<Data>& data,
                     LogLik loglik, Make make) {
  for (double v : log_params) {
    if (!std::isfinite(v) || std::abs(v) > 30) return kInf;
  }
  const Params p = make(log_params);
  double sum = 0;
  for (const Data& d : data) sum += loglik(p, d);
  const double mean = -sum / static_cast<double>(data.size());
  return std::isfinite(mean) ? mean : kInf;
}

// Nelder-Mead, restarted from its own optimum until a restart no longer
// improves: a collapsed simplex is the method's usual way to stop early.
std::vector<double> Minimise(const std::function<double(const std::vector<double>&)>& f,
                             std::vector<double> x, int max_evals) {
  double best = f(x);
  for (int left = max_evals; left > 0; left -= 4000) {
    x = NelderMead(f, x, std::min(left, 4000), 1e-13);
    const double value = f(x);
    if (best - value < 1e-12) break;
    best = value;
  }
  return x;
}

}  // namespace

std::vector<double> NelderMead(const std::function<double(const std::vector<double>&)>& f,
                               std::vector<double> start, int max_evals, double tol) {
  const size_t n = start.size();
  std::vector<std::vector<double>> simplex(n + 1, start);
  for (size_t i = 0; i < n; ++i) simplex[i + 1][i] += 0.5;
  std::vector<double> values(n + 1);
  int evals = 0;
  auto eval = [&](const std::vector<double>& x) {
    ++evals;
    return f(x);
  };
  for (size_t i = 0; i <= n; ++i) values[i] = eval(simplex[i]);
  std::vector<size_t> order(n + 1);
  while (evals < max_evals) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] < values[b]; });
    const size_t best = order[0], worst = order[n], second = order[n - 1];
    if (std::abs(values[worst] - values[best]) <= tol * (std::abs(values[best]) + tol)) break;
    std::vector<double> centroid(n, 0);
    for (size_t i = 0; i <= n; ++i) {
      if (i == worst) continue;
      for (size_t j = 0; j < n; ++j) centroid[j] += simplex[i][j] / n;
    }
    auto along = [&](double t) {
      std::vector<double> x(n);
      for (size_t j = 0; j < n; ++j) x[j] = centroid[j] + t * (simplex[worst][j] - centroid[j]);
      return x;
    };
    const std::vector<double> reflected = along(-1);
    const double fr = eval(reflected);
    if (fr < values[best]) {
      const std::vector<double> expanded = along(-2);
      const double fe = eval(expanded);
      if (fe < fr) {
        simplex[worst] = expanded, values[worst] = fe;
      } else {
        simplex[worst] = reflected, values[worst] = fr;
      }
    } else if (fr < values[second]) {
      simplex[worst] = reflected, values[worst] = fr;
    } else {
      const std::vector<double> contracted = along(fr < values[worst] ? -0.5 : 0.5);
      const double fc = eval(contracted);
      if (fc < std::min(fr, values[worst])) {
        simplex[worst] = contracted, values[worst] = fc;
      } else {
        // Shrink toward the best point.
        for (size_t i = 0; i <= n; ++i) {
          if (i == best) continue;
          for (size_t j = 0; j < n; ++j) {
            simplex[i][j] = simplex[best][j] + 0.5 * (simplex[i][j] - simplex[best][j]);
          }
          values[i] = eval(simplex[i]);
        }
      }
    }
  }
  const size_t best =
      static_cast<size_t>(std::min_element(values.begin(), values.end()) - values.begin());
  return simplex[best];
}

double BgNbdLogLikelihood(const BgNbdParams& p, const RepeatHistory& h) {
  const double x = h.x;
  const double a1 = std::lgamma(p.r + x) - std::lgamma(p.r) + p.r * std::log(p.alpha);
  const double a2 = std::lgamma(p.a + p.b) + std::lgamma(p.b + x) - std::lgamma(p.b) -
                    std::lgamma(p.a + p.b + x);
  const double a3 = -(p.r + x) * std::log(p.alpha + h.T);
  if (x <= 0) return a1 + a2 + a3;
  const double a4 =
      std::log(p.a) - std::log(p.b + x - 1) - (p.r + x) * std::log(p.alpha + h.t_x);
  // log(exp(a3) + exp(a4)), computed without overflow.
  const double hi = std::max(a3, a4);
  return a1 + a2 + hi + std::log(std::exp(a3 - hi) + std::exp(a4 - hi));
}

BgNbdParams FitBgNbd(const std::vector<RepeatHistory>& customers, int max_evals) {
  if (customers.empty()) return {};
  auto make = [](const std::vector<double>& v) {
    return BgNbdParams{std::exp(v[0]), std::exp(v[1]), std::exp(v[2]), std::exp(v[3])};
  };
  double mean_T = 0;
  for (const RepeatHistory& h : customers) mean_T += h.T / customers.size();
  auto f = [&](const std::vector<double>& v) {
    return MeanNegLogLik<BgNbdParams>(v, customers, BgNbdLogLikelihood, make);
  };
  return make(Minimise(f, {0.0, std::log(std::max(1.0, mean_T / 10)), 0.0, 0.0}, max_evals));
}

double ProbabilityAlive(const BgNbdParams& p, const RepeatHistory& h) {
  if (h.x <= 0) return 1;
  return 1 / (1 + p.a / (p.b + h.x - 1) *
                      std::pow((p.alpha + h.T) / (p.alpha + h.t_x), p.r + h.x));
}

double ExpectedPurchases(const BgNbdParams& p, const RepeatHistory& h, double t) {
  const double x = h.x;
  const double z = t / (p.alpha + h.T + t);
  const double head = (p.a + p.b + x - 1) / (p.a - 1);
  const double tail = 1 - std::pow((p.alpha + h.T) / (p.alpha + h.T + t), p.r + x) *
                              Hyp2F1(p.r + x, p.b + x, p.a + p.b + x - 1, z);
  double denominator = 1;
  if (x > 0) {
    denominator += p.a / (p.b + x - 1) * std::pow((p.alpha + h.T) / (p.alpha + h.t_x), p.r + x);
  }
  return head * tail / denominator;
}

double GammaGammaLogLikelihood(const GammaGammaParams& p, const SpendHistory& h) {
  const double px = p.p * h.x;
  return std::lgamma(px + p.q) - std::lgamma(px) - std::lgamma(p.q) + p.q * std::log(p.v) +
         (px - 1) * std::log(h.mean) + px * std::log(h.x) - (px + p.q) * std::log(h.x * h.mean + p.v);
}

GammaGammaParams FitGammaGamma(const std::vector<SpendHistory>& customers,
                               int max_evals) {
  if (customers.empty()) return {};
  auto make = [](const std::vector<double>& v) {
    return GammaGammaParams{std::exp(v[0]), std::exp(v[1]), std::exp(v[2])};
  };
  double mean = 0;
  for (const SpendHistory& h : customers) mean += h.mean / customers.size();
  auto f = [&](const std::vector<double>& v) {
    return MeanNegLogLik<GammaGammaParams>(v, customers, GammaGammaLogLikelihood, make);
  };
  return make(Minimise(f, {0.0, 0.0, std::log(std::max(1e-6, mean))}, max_evals));
}

double ExpectedAverageSpend(const GammaGammaParams& p, const SpendHistory& h) {
  return p.p * (p.v + h.x * h.mean) / (p.p * h.x + p.q - 1);
}

}  // namespace mercato::core
