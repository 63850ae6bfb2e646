#include "models/segments/customer_value.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace mercato::core {
namespace {

// Rows of a CSV with a header, as numbers.
std::vector<std::vector<double>> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  std::vector<std::vector<double>> rows;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::vector<double> row;
    for (absl::string_view cell : absl::StrSplit(line, ',')) {
      double v = 0;
      EXPECT_TRUE(absl::SimpleAtod(cell, &v)) << line;
      row.push_back(v);
    }
    rows.push_back(row);
  }
  return rows;
}

const std::string kCdnow = std::string(MERCATO_SHARED_DATA) + "/cdnow/";

void ExpectWithinOnePercent(double got, double published, const char* name) {
  EXPECT_NEAR(got, published, 0.01 * published) << name;
}

TEST(CustomerValueTest, BgNbdReproducesThePublishedCdnowFit) {
  std::vector<RepeatHistory> customers;
  for (const auto& row : ReadCsv(kCdnow + "cdnow_customers_summary.csv")) {
    customers.push_back({row[1], row[2], row[3]});  // ID,frequency,recency,T (weeks)
  }
  ASSERT_EQ(customers.size(), 2357u);
  const BgNbdParams p = FitBgNbd(customers, 80000);
  RecordProperty("fit", absl::StrFormat("r=%.4f alpha=%.4f a=%.4f b=%.4f", p.r, p.alpha, p.a, p.b));
  ExpectWithinOnePercent(p.r, 0.243, "r");
  ExpectWithinOnePercent(p.alpha, 4.414, "alpha");
  ExpectWithinOnePercent(p.a, 0.793, "a");
  ExpectWithinOnePercent(p.b, 2.426, "b");
  // The paper's worked example: a customer with x = 2, t_x = 30.43, T = 38.86
  // expects about 1.23 purchases in the next 39 weeks (0.0 in the paper's
  // Figure is for a lapsed one).
  const RepeatHistory h{2, 30.43, 38.86};
  EXPECT_NEAR(ExpectedPurchases(p, h, 39), 1.23, 0.02);
  EXPECT_GT(ProbabilityAlive(p, h), 0.5);
  EXPECT_LT(ProbabilityAlive(p, {2, 5, 38.86}), ProbabilityAlive(p, h));
  // One purchase only: valid, finite values.
  const RepeatHistory single{0, 0, 20};
  EXPECT_EQ(ProbabilityAlive(p, single), 1);
  EXPECT_GT(ExpectedPurchases(p, single, 39), 0);
  EXPECT_TRUE(std::isfinite(ExpectedPurchases(p, single, 39)));
}

TEST(CustomerValueTest, GammaGammaReproducesThePublishedCdnowFit) {
  std::vector<SpendHistory> customers;
  for (const auto& row : ReadCsv(kCdnow + "cdnow_customers_summary_with_transactions.csv")) {
    if (row[1] > 0) customers.push_back({row[1], row[4]});  // ID,x,t_x,T,zbar
  }
  const GammaGammaParams p = FitGammaGamma(customers, 80000);
  RecordProperty("fit", absl::StrFormat("p=%.4f q=%.4f v=%.4f", p.p, p.q, p.v));
  ExpectWithinOnePercent(p.p, 6.25, "p");
  ExpectWithinOnePercent(p.q, 3.74, "q");
  ExpectWithinOnePercent(p.v, 15.44, "v");
  // Shrinks a customer's own mean toward the population's.
  const double population = p.p * p.v / (p.q - 1);
  const double spend = ExpectedAverageSpend(p, {1, 100});
  EXPECT_LT(spend, 100);
  EXPECT_GT(spend, population);
  EXPECT_NEAR(ExpectedAverageSpend(p, {0, 0}), population, 1e-9);
}

}  // namespace
}  // namespace mercato::core
