// Customer value: the BG/NBD model of repeat purchases (Fader, Hardie and Lee
// 2005) and the Gamma-Gamma model of spend (Fader and Hardie 2013), fitted by
// maximum likelihood, and the per-customer quantities they give.
//
// A customer is summarised as x repeat purchases, the time t_x of the last
// one and the time T since the first, all measured from the first purchase in
// one time unit (the server uses days; the published CDNOW figures use weeks).
// Pure functions; thread-safe.
#ifndef MERCATO_MODELS_SEGMENTS_CUSTOMER_VALUE_H_
#define MERCATO_MODELS_SEGMENTS_CUSTOMER_VALUE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mercato::core {

struct RepeatHistory {
  double x = 0;    // repeat purchases
  double t_x = 0;  // time of the last purchase (0 when x = 0)
  double T = 0;    // time since the first purchase
};

struct BgNbdParams {
  double r = 0, alpha = 0, a = 0, b = 0;
};

struct GammaGammaParams {
  double p = 0, q = 0, v = 0;
};

// Minimises f over R^n from `start` by Nelder-Mead; stops after `max_evals`
// evaluations or when the simplex's values agree to `tol`. A budget in
// evaluations, never in time, so that a fit is the same on any machine.
std::vector<double> NelderMead(const std::function<double(const std::vector<double>&)>& f,
                               std::vector<double> start, int max_evals, double tol);

double BgNbdLogLikelihood(const BgNbdParams& p, const RepeatHistory& h);
// Maximum likelihood over `customers`, within `max_evals` evaluations of the
// likelihood (Nelder-Mead, restarted from its optimum while that improves).
BgNbdParams FitBgNbd(const std::vector<RepeatHistory>& customers, int max_evals);

// The probability that the customer is still active.
double ProbabilityAlive(const BgNbdParams& p, const RepeatHistory& h);
// Expected purchases in the next `t` time units.
double ExpectedPurchases(const BgNbdParams& p, const RepeatHistory& h, double t);

struct SpendHistory {
  double x = 0;      // repeat purchases, > 0
  double mean = 0;   // their average value, > 0
};

double GammaGammaLogLikelihood(const GammaGammaParams& p, const SpendHistory& h);
GammaGammaParams FitGammaGamma(const std::vector<SpendHistory>& customers, int max_evals);
// E[average spend | history]; with x = 0 the population mean p v / (q - 1).
double ExpectedAverageSpend(const GammaGammaParams& p, const SpendHistory& h);

}  // namespace mercato::core

#endif  // MERCATO_MODELS_SEGMENTS_CUSTOMER_VALUE_H_
