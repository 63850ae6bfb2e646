// mercato-replay: replays a transactions file (by default the Online Retail
// II CSV in ../shared/data/online_retail_ii; --format=generic for
// user,item,timestamp[,price,quantity,order]) into a running server as
// catalogue items and PURCHASE / REFUND events in file order, at full speed
// or --speed times real time, waits until the models have applied them, and
// prints a report of what the models learned.
//
//   mercato-replay --target=127.0.0.1:50051
//       --data=../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz
//       --report=elasticity
//
// Rows: Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,
// Country. Invoices starting with C are cancellations (REFUND events); rows
// with a price of 0 or less are adjustments and skipped; rows without a
// customer id become purchases of a guest named after the invoice. Event ids
// are derived from the row number, so replaying twice adds nothing.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "clients/client_util.h"
#include "clients/transactions.h"
#include "core/command_line.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "mercato-server address");
ABSL_FLAG(std::string, data, "../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz",
          "the Online Retail II CSV (gzipped or plain)");
ABSL_FLAG(std::string, format, "online-retail",
          "online-retail, or generic: user,item,timestamp[,price,quantity,order]");
ABSL_FLAG(
    double, speed, 0,
    "0 = publish at full speed; N = pace the events by their timestamps at N times real time");
ABSL_FLAG(std::string, report, "elasticity",
          "what to print after the replay: elasticity, segments, or none");
ABSL_FLAG(int, examples, 10, "elasticity: named examples to print");

namespace mercato::clients {
namespace {

// Publishes the catalogue and the events (at full speed, or paced by their
// timestamps at --speed times real time); returns the items that were bought.
std::vector<std::string> Publish(grpc::Channel& channel, const std::vector<Row>& rows) {
  const std::vector<v1::Item> items = CatalogueOf(rows);
  CheckOrExit(UpsertItems(channel, items, 5000).status(), "UpsertItems");
  std::vector<std::string> bought;
  for (const v1::Item& it : items) bought.push_back(it.item_id());
  const std::vector<v1::Event> events = EventsOf(rows);
  const double speed = absl::GetFlag(FLAGS_speed);
  uint64_t accepted = 0, duplicates = 0;
  const auto wall_start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < events.size();) {
    // The events due now (all of them at full speed).
    size_t end = events.size();
    if (speed > 0) {
      const double elapsed_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start)
              .count();
      const int64_t due_ms =
          events.front().timestamp_ms() + static_cast<int64_t>(elapsed_ms * speed);
      end = i;
      while (end < events.size() && events[end].timestamp_ms() <= due_ms) ++end;
      if (end == i) {
        const double wait_ms = (events[i].timestamp_ms() - due_ms) / speed;
        std::this_thread::sleep_for(
            std::chrono::duration<double, std::milli>(std::min(wait_ms, 100.0)));
        continue;
      }
    }
    v1::PublishSummary summary;
    CheckOrExit(PublishEvents(channel, {events.begin() + i, events.begin() + end}, 5000, &summary),
                "PublishBatch");
    accepted += summary.accepted();
    duplicates += summary.duplicates();
    i = end;
  }
  std::printf("published %zu items, %lu new events (%lu already there) in %.1f s\n", items.size(),
              accepted, duplicates,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count());
  CheckOrExit(WaitApplied(channel), "ModelStatus");
  return bought;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * (v.size() - 1))];
}

void ElasticityReport(grpc::Channel& channel, const std::vector<std::string>& items,
                      const std::vector<Row>& rows) {
  std::map<std::string, std::string> description;
  for (const Row& r : rows) description.emplace(r.item, r.description);
  auto pricing = v1::Pricing::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  std::map<std::string, int> by_level;
  std::vector<double> estimates;
  int elastic = 0, significant = 0, positive = 0;
  std::vector<std::pair<std::string, v1::PriceElasticityResponse>> answered;
  for (const std::string& item : items) {
    v1::PriceElasticityRequest req;
    req.set_item_id(item);
    v1::PriceElasticityResponse resp;
    CheckOrExit(pricing->PriceElasticity(Deadline(10).get(), req, &resp), "PriceElasticity");
    ++by_level[resp.has_estimate() ? v1::EstimateLevel_Name(resp.level()) : "none"];
    if (!resp.has_estimate()) continue;
    estimates.push_back(resp.elasticity());
    elastic += resp.ci_high() < -1;
    significant += resp.ci_high() < 0;
    positive += resp.ci_low() > 0;
    answered.emplace_back(item, resp);
  }
  std::printf("\nPriceElasticity over %zu bought products:\n", items.size());
  for (const auto& [level, n] : by_level) std::printf("  %-9s %d\n", level.c_str(), n);
  std::printf("estimates: %zu; quantiles p10 %.2f, p25 %.2f, median %.2f, p75 %.2f, p90 %.2f\n",
              estimates.size(), Quantile(estimates, 0.1), Quantile(estimates, 0.25),
              Quantile(estimates, 0.5), Quantile(estimates, 0.75), Quantile(estimates, 0.9));
  std::printf("  95%% interval below 0: %d; wholly below -1 (elastic): %d; above 0: %d\n",
              significant, elastic, positive);
  std::sort(answered.begin(), answered.end(), [](const auto& a, const auto& b) {
    return a.second.observations() > b.second.observations();
  });
  std::printf("\nthe %d products with the most sales days:\n", absl::GetFlag(FLAGS_examples));
  for (int i = 0; i < absl::GetFlag(FLAGS_examples) && i < static_cast<int>(answered.size()); ++i) {
    const auto& [item, r] = answered[i];
    std::printf("  %-8s %-36s e = %6.2f  95%% [%6.2f, %6.2f]  days %4lu  price %.2f..%.2f\n",
                item.c_str(), description[item].substr(0, 36).c_str(), r.elasticity(), r.ci_low(),
                r.ci_high(), r.observations(), r.min_price_seen(), r.max_price_seen());
  }
}

// Refits the segments on everything replayed, then prints each segment and
// the most valuable customers.
void SegmentsReport(grpc::Channel& channel, const std::vector<Row>& rows) {
  std::shared_ptr<grpc::Channel> ch(&channel, [](grpc::Channel*) {});
  auto admin = v1::Admin::NewStub(ch);
  auto segmenter = v1::Segmenter::NewStub(ch);
  v1::ListSegmentsResponse before;
  segmenter->ListSegments(Deadline(10).get(), v1::ListSegmentsRequest(), &before).IgnoreError();
  v1::RetrainRequest retrain;
  retrain.set_model("segments");
  v1::RetrainResponse retrained;
  CheckOrExit(admin->Retrain(Deadline(10).get(), retrain, &retrained), "Retrain");
  v1::ListSegmentsResponse list;
  for (int i = 0; i < 600; ++i) {
    list.Clear();
    if (segmenter->ListSegments(Deadline(10).get(), v1::ListSegmentsRequest(), &list).ok() &&
        list.model_version() != before.model_version()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("\nsegments (fitted on every customer):\n");
  std::printf("  %-3s %-16s %6s %10s %8s %10s %10s %8s\n", "id", "label", "size", "recency_d",
              "orders", "avg_order", "tenure_d", "refunds");
  for (const v1::SegmentProfile& s : list.segments()) {
    std::printf("  %-3u %-16s %6lu %10.1f %8.1f %10.2f %10.1f %8.3f\n", s.segment_id(),
                s.label().c_str(), s.size(), s.centroid().recency_days(), s.centroid().frequency(),
                s.centroid().monetary(), s.features().at("tenure_days"),
                s.features().at("refund_rate"));
  }
  std::vector<std::pair<std::string, v1::SegmentResponse>> valued;
  std::map<std::string, bool> seen;
  for (const Row& r : rows) {
    if (r.user.empty() || seen[r.user]) continue;
    seen[r.user] = true;
    v1::SegmentRequest req;
    req.set_user_id(UserOf(r));
    v1::SegmentResponse resp;
    if (segmenter->Segment(Deadline(10).get(), req, &resp).ok()) {
      valued.emplace_back(req.user_id(), resp);
    }
  }
  std::sort(valued.begin(), valued.end(), [](const auto& a, const auto& b) {
    return a.second.customer_value() > b.second.customer_value();
  });
  std::printf("\nthe five most valuable of %zu customers (next %u days):\n", valued.size(),
              valued.empty() ? 0 : valued[0].second.horizon_days());
  for (size_t i = 0; i < 5 && i < valued.size(); ++i) {
    const v1::SegmentResponse& r = valued[i].second;
    std::printf(
        "  %-7s %-12s value %9.2f  purchases %5.2f  P(alive) %.2f  spend %8.2f  "
        "orders %3.0f  recency %3.0f d\n",
        valued[i].first.c_str(), r.label().c_str(), r.customer_value(), r.expected_purchases(),
        r.probability_alive(), r.expected_average_spend(), r.rfm().frequency(),
        r.rfm().recency_days());
  }
}

int Main() {
  uint64_t skipped = 0;
  const std::vector<Row> rows =
      ReadTransactions(absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_format), &skipped);
  std::printf("read %zu rows (%lu unreadable)\n", rows.size(), skipped);
  auto channel = MakeChannel(absl::GetFlag(FLAGS_target), ClientAuthFromFlags());
  if (!WaitForReady(*channel, std::chrono::seconds(10))) {
    std::cerr << "cannot reach " << absl::GetFlag(FLAGS_target) << "\n";
    return 1;
  }
  const std::vector<std::string> items = Publish(*channel, rows);
  const std::string report = absl::GetFlag(FLAGS_report);
  if (report == "elasticity") {
    ElasticityReport(*channel, items, rows);
  } else if (report == "segments") {
    SegmentsReport(*channel, rows);
  } else if (report != "none") {
    std::cerr << "--report: must be elasticity, segments or none\n";
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace mercato::clients

int main(int argc, char** argv) {
  mercato::core::ParseCommandLine(argc, argv,
                                  "replays a public transactions file into a "
                                  "Mercato server and reports on it");
  return mercato::clients::Main();
}
