// mercato-replay: replays the Online Retail II transactions (the gzipped CSV
// in ../shared/data/online_retail_ii) into a running server as catalogue
// items and PURCHASE / REFUND events in file order, waits until the models
// have applied them, and prints a report of what the models learned.
//
//   mercato-replay --target=127.0.0.1:50051 \
//       --data=../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz \
//       --report=elasticity
//
// Rows: Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,
// Country. Invoices starting with C are cancellations (REFUND events); rows
// with a price of 0 or less are adjustments and skipped; rows without a
// customer id become purchases of a guest named after the invoice. Event ids
// are derived from the row number, so replaying twice adds nothing.
#include <zlib.h>

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
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "mercato-server address");
ABSL_FLAG(std::string, data, "../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz",
          "the Online Retail II CSV (gzipped or plain)");
ABSL_FLAG(std::string, report, "elasticity",
          "what to print after the replay: elasticity, segments, or none");
ABSL_FLAG(int, examples, 10, "elasticity: named examples to print");

namespace mercato::clients {
namespace {

struct Row {
  std::string invoice, stock_code, description, customer;
  double quantity = 0, price = 0;
  int64_t timestamp_ms = 0;
};

// Splits one CSV line; fields may be quoted, with "" for a quote inside.
std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r' && c != '\n') {
      out.back() += c;
    }
  }
  return out;
}

bool ParseRow(const std::vector<std::string>& f, Row* row) {
  if (f.size() != 8) return false;
  row->invoice = f[0];
  row->stock_code = f[1];
  row->description = f[2];
  row->customer = std::string(absl::StripSuffix(f[6], ".0"));
  absl::Time t;
  std::string err;
  if (!absl::SimpleAtod(f[3], &row->quantity) || !absl::SimpleAtod(f[5], &row->price) ||
      !absl::ParseTime("%Y-%m-%d %H:%M:%S", f[4], absl::UTCTimeZone(), &t, &err)) {
    return false;
  }
  row->timestamp_ms = absl::ToUnixMillis(t);
  return !row->stock_code.empty() && !row->invoice.empty();
}

std::vector<Row> ReadRows(const std::string& path, uint64_t* skipped) {
  gzFile in = gzopen(path.c_str(), "rb");  // reads plain files too
  if (in == nullptr) {
    std::cerr << "cannot open " << path << "\n";
    std::exit(1);
  }
  std::vector<Row> rows;
  std::string line;
  char buf[4096];
  bool header = true;
  while (gzgets(in, buf, sizeof buf) != nullptr) {
    line += buf;
    if (line.empty() || line.back() != '\n') continue;
    if (!header) {
      Row row;
      if (ParseRow(SplitCsv(line), &row)) {
        rows.push_back(std::move(row));
      } else {
        ++*skipped;
      }
    }
    header = false;
    line.clear();
  }
  gzclose(in);
  return rows;
}

std::unique_ptr<grpc::ClientContext> Deadline(int seconds) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

void Check(const grpc::Status& s, const char* what) {
  if (s.ok()) return;
  std::cerr << what << ": " << s.error_message() << "\n";
  std::exit(1);
}

void Check(const absl::Status& s, const char* what) {
  if (s.ok()) return;
  std::cerr << what << ": " << s << "\n";
  std::exit(1);
}

// Publishes the catalogue (last price and description of each stock code)
// and the events; returns the stock codes that were bought.
std::vector<std::string> Publish(grpc::Channel& channel, const std::vector<Row>& rows) {
  std::shared_ptr<grpc::Channel> ch(&channel, [](grpc::Channel*) {});
  std::map<std::string, const Row*> last_row;
  for (const Row& r : rows) {
    if (r.price > 0 && r.quantity > 0) last_row[r.stock_code] = &r;
  }
  std::vector<v1::Item> items;
  std::vector<std::string> bought;
  for (const auto& [code, r] : last_row) {
    bought.push_back(code);
    v1::Item& it = items.emplace_back();
    it.set_item_id(code);
    it.set_price(r->price);
    it.set_in_stock(true);
    if (!r->description.empty()) (*it.mutable_attributes())["description"] = r->description.substr(0, 1024);
  }
  Check(UpsertItems(channel, items, 5000).status(), "UpsertItems");
  std::vector<v1::Event> events;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const bool refund = r.invoice[0] == 'C';
    if (r.price <= 0 || (refund ? r.quantity >= 0 : r.quantity <= 0)) continue;
    v1::Event& e = events.emplace_back();
    e.set_event_id(absl::StrCat("retail-", i));
    e.set_type(refund ? v1::REFUND : v1::PURCHASE);
    e.set_user_id(r.customer.empty() ? absl::StrCat("guest-", r.invoice) : absl::StrCat("c", r.customer));
    e.set_item_id(r.stock_code);
    e.set_order_id(r.invoice);
    e.set_timestamp_ms(r.timestamp_ms);
    e.set_quantity(std::abs(r.quantity));
    e.set_unit_price(r.price);
  }
  v1::PublishSummary summary;
  Check(PublishEvents(channel, events, 5000, &summary), "PublishBatch");
  const uint64_t accepted = summary.accepted(), duplicates = summary.duplicates();
  std::printf("published %zu items, %lu new events (%lu already there)\n", last_row.size(), accepted,
              duplicates);
  auto admin = v1::Admin::NewStub(ch);
  for (;;) {
    v1::ModelStatusResponse st;
    Check(admin->ModelStatus(Deadline(10).get(), v1::ModelStatusRequest(), &st), "ModelStatus");
    if (st.lag_events() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
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
  for (const Row& r : rows) description.emplace(r.stock_code, r.description);
  auto pricing = v1::Pricing::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  std::map<std::string, int> by_level;
  std::vector<double> estimates;
  int elastic = 0, significant = 0, positive = 0;
  std::vector<std::pair<std::string, v1::PriceElasticityResponse>> answered;
  for (const std::string& item : items) {
    v1::PriceElasticityRequest req;
    req.set_item_id(item);
    v1::PriceElasticityResponse resp;
    Check(pricing->PriceElasticity(Deadline(10).get(), req, &resp), "PriceElasticity");
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
  Check(admin->Retrain(Deadline(10).get(), retrain, &retrained), "Retrain");
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
    if (r.customer.empty() || seen[r.customer]) continue;
    seen[r.customer] = true;
    v1::SegmentRequest req;
    req.set_user_id(absl::StrCat("c", r.customer));
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
    std::printf("  %-7s %-12s value %9.2f  purchases %5.2f  P(alive) %.2f  spend %8.2f  "
                "orders %3.0f  recency %3.0f d\n",
                valued[i].first.c_str(), r.label().c_str(), r.customer_value(),
                r.expected_purchases(), r.probability_alive(), r.expected_average_spend(),
                r.rfm().frequency(), r.rfm().recency_days());
  }
}

int Main() {
  uint64_t skipped = 0;
  const std::vector<Row> rows = ReadRows(absl::GetFlag(FLAGS_data), &skipped);
  std::printf("read %zu rows (%lu unreadable)\n", rows.size(), skipped);
  auto channel = MakeChannel(absl::GetFlag(FLAGS_target));
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
  absl::ParseCommandLine(argc, argv);
  return mercato::clients::Main();
}
