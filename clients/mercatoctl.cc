// mercatoctl: the command-line client. Every subcommand is one or more calls
// of the public API; responses print as JSON.
//
//   mercatoctl [--target=host:port[,host:port...]] COMMAND [args]
//   status | checkpoint | retrain [MODEL] | delete-user USER | backup NAME
//   publish FILE            events as CSV (header row) or JSON lines ('-' = stdin)
//   read-events [FROM [LIMIT]] | audit [FROM [LIMIT]]
//   token new NAME SCOPE...  prints a fresh token and its access-file line
//   catalog upsert FILE | catalog get ITEM | catalog delete ITEM
//   recommend USER [COUNT] (--arm) | similar ITEM [COUNT] | bought-together ITEM [COUNT]
//   experiments             what each experiment arm's recommendations led to
//   segment USER | segments
//   elasticity ITEM|category=NAME [PRICE...]   (--unit_cost, --segment)
//   score ORDER_JSON
//   forecast ITEM|category=NAME [DAYS]   (--plot=FILE.svg)
//   plan ITEM ON_HAND LEAD_DAYS [REVIEW_DAYS [SERVICE_LEVEL]]   (--on_order, --lead_sd_days)
//   demo                    loads the seeded demo shop (catalogue + events)
//   Any request may instead be given whole with --json='{...}'.
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "clients/client_util.h"
#include "core/command_line.h"
#include "google/protobuf/util/json_util.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/experiments.grpc.pb.h"
#include "mercato/v1/forecasting.grpc.pb.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "server/access.h"
#include "testing/demo_shop.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "server address; replicas as host:port,host:port (round robin over the serving ones)");
ABSL_FLAG(std::string, json, "", "the whole request as JSON (overrides positional arguments)");
ABSL_FLAG(int, batch, 1000, "events or items per call when publishing");
ABSL_FLAG(int, deadline_ms, 30000, "deadline of each call");
ABSL_FLAG(bool, explain, false, "recommend: include explanations");
ABSL_FLAG(std::string, arm, "", "recommend: the experiment arm (--rec_experiment_arms)");
ABSL_FLAG(double, unit_cost, 0, "elasticity: cost per unit (0 = the catalogue's)");
ABSL_FLAG(int, segment, -1, "elasticity: estimate within this segment id (-1 = all customers)");
ABSL_FLAG(std::string, plot, "",
          "forecast: also write an SVG chart of the last 8 weeks, the forecast and its "
          "intervals to this file");
ABSL_FLAG(double, on_order, 0, "plan: units already on order");
ABSL_FLAG(double, lead_sd_days, 0, "plan: standard deviation of the lead time, days");
ABSL_FLAG(uint64_t, demo_seed, 42, "demo: seed of the synthetic shop");
ABSL_FLAG(int, demo_users, 2000, "demo: customers");
ABSL_FLAG(int, demo_items, 400, "demo: products");
ABSL_FLAG(int, demo_days, 120, "demo: days of history");
ABSL_FLAG(int, demo_demand_items, 40,
          "demo: products with planted daily demand (demand0, demand1, ...: smooth, "
          "intermittent, stopping and priced in turn) for forecasting");

namespace mercato::clients {
namespace {

using google::protobuf::Message;

[[noreturn]] void Die(const std::string& msg) {
  std::cerr << "mercatoctl: " << msg << "\n";
  std::exit(2);
}

std::string ToJson(const Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, opts).ok()) return m.DebugString();
  return out;
}

void FromJson(const std::string& json, Message* m) {
  auto s = google::protobuf::util::JsonStringToMessage(json, m);
  if (!s.ok()) Die(absl::StrCat("bad JSON for ", m->GetTypeName(), ": ", s.ToString()));
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::GetFlag(FLAGS_deadline_ms)));
  return ctx;
}

// Prints the response, or the error and exit code 1.
int Report(const grpc::Status& status, const Message& response) {
  if (!status.ok()) {
    std::cerr << "error: " << status.error_code() << " " << status.error_message() << "\n";
    return 1;
  }
  std::cout << ToJson(response);
  return 0;
}

// Calls a unary method with `request` (replaced by --json when given).
template <class Stub, class Req, class Resp>
int Call(Stub& stub, grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
         Req request) {
  if (const std::string json = absl::GetFlag(FLAGS_json); !json.empty()) {
    request.Clear();
    FromJson(json, &request);
  }
  Resp response;
  auto ctx = Context();
  return Report((stub.*method)(ctx.get(), request, &response), response);
}

std::string Arg(const std::vector<std::string>& args, size_t i, const char* what) {
  if (i < args.size()) return args[i];
  if (!absl::GetFlag(FLAGS_json).empty()) return "";
  Die(absl::StrCat("missing ", what));
}

uint32_t CountArg(const std::vector<std::string>& args, size_t i, uint32_t fallback = 10) {
  uint32_t n = fallback;
  if (i < args.size() && !absl::SimpleAtoi(args[i], &n)) Die("COUNT must be a number");
  return n;
}

// A chart a person can open: the history, the forecast and its intervals
// (the widest palest), days on the x axis, units on the y axis.
std::string ForecastSvg(const std::string& title, const v1::ForecastDemandResponse& f) {
  constexpr double kW = 900, kH = 420, kLeft = 50, kBottom = 30, kTop = 30;
  const int past = f.history_size(), n = past + f.mean_size();
  double top = 1;
  for (double v : f.history()) top = std::max(top, v);
  for (const v1::DemandInterval& in : f.intervals()) {
    for (double v : in.upper()) top = std::max(top, v);
  }
  top *= 1.1;
  const auto x = [&](int d) { return kLeft + (kW - kLeft - 10) * d / std::max(1, n - 1); };
  const auto y = [&](double v) { return kH - kBottom - (kH - kBottom - kTop) * v / top; };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << kW << "' height='" << kH
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << kLeft << "' y='18' font-size='14'>" << title << ": " << f.method()
      << ", backtest MASE " << f.backtest_mase() << " (seasonal naive " << f.seasonal_naive_mase()
      << ")</text>\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = top * k / 4;
    svg << "<line x1='" << kLeft << "' x2='" << kW - 10 << "' y1='" << y(v) << "' y2='" << y(v)
        << "' stroke='#eee'/><text x='4' y='" << y(v) + 4 << "'>" << std::lround(v) << "</text>\n";
  }
  for (int i = f.intervals_size() - 1; i >= 0; --i) {
    const v1::DemandInterval& in = f.intervals(i);
    svg << "<polygon fill='" << (i == f.intervals_size() - 1 ? "#cfe0f7" : "#9fc1ee") << "' points='";
    for (int d = 0; d < in.upper_size(); ++d) svg << x(past + d) << "," << y(in.upper(d)) << " ";
    for (int d = in.lower_size() - 1; d >= 0; --d) svg << x(past + d) << "," << y(in.lower(d)) << " ";
    svg << "'/>\n";
  }
  const auto line = [&](const auto& values, int offset, const char* colour) {
    svg << "<polyline fill='none' stroke='" << colour << "' stroke-width='2' points='";
    for (int d = 0; d < values.size(); ++d) svg << x(offset + d) << "," << y(values[d]) << " ";
    svg << "'/>\n";
  };
  line(f.history(), 0, "#333");
  line(f.mean(), past, "#1f5fbf");
  svg << "<line x1='" << x(past) << "' x2='" << x(past) << "' y1='" << kTop << "' y2='"
      << kH - kBottom << "' stroke='#999' stroke-dasharray='4 3'/>\n"
      << "<text x='" << x(past) + 4 << "' y='" << kH - 10 << "'>shop day " << f.first_day()
      << " (forecast from here)</text>\n</svg>\n";
  return svg.str();
}

bool ParseEventType(const std::string& text, v1::EventType* out) {
  int n;
  if (absl::SimpleAtoi(text, &n)) {
    *out = static_cast<v1::EventType>(n);  // the server validates the range
    return true;
  }
  return v1::EventType_Parse(absl::AsciiStrToUpper(text), out);
}

// One CSV line into an Event, by the header's column names.
void CsvToEvent(const std::vector<std::string>& header, const std::string& line, size_t line_no,
                v1::Event* e) {
  std::vector<std::string> cells = absl::StrSplit(line, ',');
  if (cells.size() != header.size()) {
    Die(absl::StrCat("line ", line_no, ": ", cells.size(), " cells, header has ", header.size()));
  }
  for (size_t c = 0; c < header.size(); ++c) {
    const std::string& name = header[c];
    const std::string& v = cells[c];
    if (v.empty()) continue;
    bool ok = true;
    if (name == "type") {
      v1::EventType t = v1::EVENT_TYPE_UNSPECIFIED;
      ok = ParseEventType(v, &t);
      e->set_type(t);
    } else if (name == "timestamp_ms") {
      int64_t ts = 0;
      ok = absl::SimpleAtoi(v, &ts);
      e->set_timestamp_ms(ts);
    } else if (name == "quantity" || name == "unit_price" || name == "value") {
      double d = 0;
      ok = absl::SimpleAtod(v, &d);
      if (name == "quantity") e->set_quantity(d);
      if (name == "unit_price") e->set_unit_price(d);
      if (name == "value") e->set_value(d);
    } else if (const auto* f = e->GetDescriptor()->FindFieldByName(name);
               f && f->type() == google::protobuf::FieldDescriptor::TYPE_STRING) {
      e->GetReflection()->SetString(e, f, v);
    } else {
      Die(absl::StrCat("unknown CSV column '", name, "'"));
    }
    if (!ok) Die(absl::StrCat("line ", line_no, ": bad ", name, " '", v, "'"));
  }
}

// Sends the events of a CSV (first line a header) or JSON-lines file.
int Publish(v1::Ingest::Stub& stub, const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) Die(absl::StrCat("cannot open ", path));
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::string line;
  std::vector<std::string> header;
  size_t line_no = 0;
  v1::EventBatch batch;
  v1::PublishSummary total;
  auto flush = [&]() {
    if (batch.events_size() == 0) return 0;
    v1::PublishSummary s;
    auto ctx = Context();
    grpc::Status st = stub.PublishBatch(ctx.get(), batch, &s);
    if (!st.ok()) return Report(st, s);
    total.set_accepted(total.accepted() + s.accepted());
    total.set_duplicates(total.duplicates() + s.duplicates());
    total.set_last_sequence(s.last_sequence());
    batch.Clear();
    return 0;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '{') {
      FromJson(line, batch.add_events());
    } else if (header.empty()) {
      header = absl::StrSplit(line, ',');
      continue;
    } else {
      CsvToEvent(header, line, line_no, batch.add_events());
    }
    if (batch.events_size() >= absl::GetFlag(FLAGS_batch)) {
      if (int rc = flush(); rc != 0) return rc;
    }
  }
  if (int rc = flush(); rc != 0) return rc;
  std::cout << ToJson(total);
  return 0;
}

int UpsertItems(grpc::Channel& channel, const std::vector<v1::Item>& items) {
  absl::StatusOr<uint64_t> n = clients::UpsertItems(channel, items, absl::GetFlag(FLAGS_batch));
  if (!n.ok()) {
    std::cerr << n.status() << "\n";
    return 1;
  }
  v1::UpsertItemsResponse total;
  total.set_upserted(*n);
  std::cout << ToJson(total);
  return 0;
}

// Loads the seeded demo shop: catalogue first, then every event.
int LoadDemo(grpc::Channel& channel) {
  core::DemoShopOptions o;
  o.seed = absl::GetFlag(FLAGS_demo_seed);
  o.users = absl::GetFlag(FLAGS_demo_users);
  o.items = absl::GetFlag(FLAGS_demo_items);
  o.days = absl::GetFlag(FLAGS_demo_days);
  o.demand_items = absl::GetFlag(FLAGS_demo_demand_items);
  v1::PublishSummary total;
  if (absl::Status s = clients::LoadDemoShop(channel, core::GenerateDemoShop(o), 5000, &total);
      !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  std::cout << ToJson(total);
  return 0;
}

std::vector<v1::Item> ReadItems(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die(absl::StrCat("cannot open ", path));
  std::vector<v1::Item> items;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    items.emplace_back();
    FromJson(line, &items.back());
  }
  return items;
}

// token new NAME SCOPE...: the token on the first line (give it to the
// client), the access-file line on the second (add it to the server's
// --auth_tokens_file). Makes no call.
int NewToken(const std::vector<std::string>& args) {
  if (Arg(args, 1, "token subcommand (new)") != "new")
    Die("unknown token subcommand; use 'token new NAME SCOPE...'");
  const std::string name = Arg(args, 2, "NAME");
  if (args.size() < 4)
    Die("token new: give at least one SCOPE (recommend segment pricing score forecast ingest "
        "catalog admin)");
  std::vector<server::Scope> scopes;
  for (size_t i = 3; i < args.size(); ++i) {
    const std::optional<server::Scope> s = server::ParseScope(args[i]);
    if (!s)
      Die(absl::StrCat(
          "unknown scope '", args[i],
          "'; scopes are recommend segment pricing score forecast ingest catalog admin"));
    scopes.push_back(*s);
  }
  if (name.find_first_of(" \t#") != std::string::npos) Die("NAME: no spaces or '#'");
  const std::string token = server::NewToken();
  std::printf("%s\n%s\n", token.c_str(), server::TokenLine(name, token, scopes).c_str());
  return 0;
}

int Main(const std::vector<std::string>& args) {
  if (args.empty()) Die("a command is required; see 'mercatoctl help'");
  if (args[0] == "help") {
    std::printf("%s\n", absl::ProgramUsageMessage().data());
    return 0;
  }
  const std::string& cmd = args[0];
  if (cmd == "token") return NewToken(args);
  auto channel = MakeChannel(absl::GetFlag(FLAGS_target), ClientAuthFromFlags());
  auto admin = v1::Admin::NewStub(channel);
  auto ingest = v1::Ingest::NewStub(channel);
  auto catalog = v1::Catalog::NewStub(channel);
  auto recommender = v1::Recommender::NewStub(channel);
  auto segmenter = v1::Segmenter::NewStub(channel);
  auto pricing = v1::Pricing::NewStub(channel);
  auto fraud = v1::Fraud::NewStub(channel);
  auto forecasting = v1::Forecasting::NewStub(channel);
  using A = v1::Admin::Stub;
  if (cmd == "status") return Call(*admin, &A::ModelStatus, v1::ModelStatusRequest());
  if (cmd == "checkpoint") return Call(*admin, &A::Checkpoint, v1::CheckpointRequest());
  if (cmd == "experiments") {
    return Call(*v1::Experiments::NewStub(channel), &v1::Experiments::Stub::GetResults,
                v1::GetExperimentResultsRequest());
  }
  if (cmd == "backup") {
    v1::BackupRequest r;
    r.set_name(Arg(args, 1, "NAME"));
    return Call(*admin, &A::Backup, r);
  }
  if (cmd == "retrain") {
    v1::RetrainRequest r;
    if (args.size() > 1) r.set_model(args[1]);
    return Call(*admin, &A::Retrain, r);
  }
  if (cmd == "delete-user") {
    v1::DeleteUserRequest r;
    r.set_user_id(Arg(args, 1, "USER"));
    return Call(*admin, &A::DeleteUser, r);
  }
  if (cmd == "read-events" || cmd == "audit") {
    uint64_t from = 1;
    uint32_t limit = 100;
    if (args.size() > 1 && !absl::SimpleAtoi(args[1], &from)) Die("FROM must be a number");
    if (args.size() > 2 && !absl::SimpleAtoi(args[2], &limit)) Die("LIMIT must be a number");
    if (cmd == "audit") {
      v1::ReadAuditRequest r;
      r.set_from_number(from);
      r.set_limit(limit);
      return Call(*admin, &A::ReadAudit, r);
    }
    v1::ReadEventsRequest r;
    r.set_from_sequence(from);
    r.set_limit(limit);
    return Call(*admin, &A::ReadEvents, r);
  }
  if (cmd == "publish") return Publish(*ingest, Arg(args, 1, "FILE"));
  if (cmd == "demo") return LoadDemo(*channel);
  if (cmd == "catalog") {
    const std::string sub = Arg(args, 1, "catalog subcommand (upsert, get, delete)");
    if (sub == "upsert") return UpsertItems(*channel, ReadItems(Arg(args, 2, "FILE")));
    if (sub == "get") {
      v1::GetItemRequest r;
      r.set_item_id(Arg(args, 2, "ITEM"));
      return Call(*catalog, &v1::Catalog::Stub::GetItem, r);
    }
    if (sub == "delete") {
      v1::DeleteItemRequest r;
      r.set_item_id(Arg(args, 2, "ITEM"));
      return Call(*catalog, &v1::Catalog::Stub::DeleteItem, r);
    }
    Die(absl::StrCat("unknown catalog subcommand '", sub, "'"));
  }
  if (cmd == "recommend") {
    v1::RecommendRequest r;
    r.set_user_id(Arg(args, 1, "USER"));
    r.set_count(CountArg(args, 2));
    r.set_explain(absl::GetFlag(FLAGS_explain));
    r.set_experiment_arm(absl::GetFlag(FLAGS_arm));
    return Call(*recommender, &v1::Recommender::Stub::Recommend, r);
  }
  if (cmd == "similar") {
    v1::SimilarItemsRequest r;
    r.set_item_id(Arg(args, 1, "ITEM"));
    r.set_count(CountArg(args, 2));
    return Call(*recommender, &v1::Recommender::Stub::SimilarItems, r);
  }
  if (cmd == "bought-together") {
    v1::BoughtTogetherRequest r;
    r.set_item_id(Arg(args, 1, "ITEM"));
    r.set_count(CountArg(args, 2));
    return Call(*recommender, &v1::Recommender::Stub::BoughtTogether, r);
  }
  if (cmd == "segment") {
    v1::SegmentRequest r;
    r.set_user_id(Arg(args, 1, "USER"));
    return Call(*segmenter, &v1::Segmenter::Stub::Segment, r);
  }
  if (cmd == "segments") {
    return Call(*segmenter, &v1::Segmenter::Stub::ListSegments, v1::ListSegmentsRequest());
  }
  if (cmd == "elasticity") {
    v1::PriceElasticityRequest r;
    const std::string what = Arg(args, 1, "ITEM");
    if (absl::StartsWith(what, "category=")) {
      r.set_category(what.substr(9));
    } else {
      r.set_item_id(what);
    }
    r.set_unit_cost(absl::GetFlag(FLAGS_unit_cost));
    if (absl::GetFlag(FLAGS_segment) >= 0) r.set_segment_id(absl::GetFlag(FLAGS_segment));
    for (size_t i = 2; i < args.size(); ++i) {
      double p;
      if (!absl::SimpleAtod(args[i], &p)) Die(absl::StrCat("bad price '", args[i], "'"));
      r.add_candidate_prices(p);
    }
    return Call(*pricing, &v1::Pricing::Stub::PriceElasticity, r);
  }
  if (cmd == "forecast") {
    v1::ForecastDemandRequest r;
    const std::string what = Arg(args, 1, "ITEM");
    if (absl::StartsWith(what, "category=")) {
      r.set_category(what.substr(9));
    } else {
      r.set_item_id(what);
    }
    r.set_horizon_days(static_cast<int>(CountArg(args, 2, 28)));
    const std::string plot = absl::GetFlag(FLAGS_plot);
    if (!plot.empty()) r.set_history_days(56);
    if (const std::string json = absl::GetFlag(FLAGS_json); !json.empty()) FromJson(json, &r);
    v1::ForecastDemandResponse resp;
    auto ctx = Context();
    const grpc::Status s = forecasting->ForecastDemand(ctx.get(), r, &resp);
    if (s.ok() && !plot.empty()) {
      std::ofstream(plot) << ForecastSvg(what, resp);
      std::cerr << "wrote " << plot << "\n";
    }
    return Report(s, resp);
  }
  if (cmd == "plan") {
    v1::PlanInventoryRequest r;
    r.set_item_id(Arg(args, 1, "ITEM"));
    const auto number = [&](size_t i, const char* what, double fallback) {
      double v = fallback;
      if (i < args.size() && !absl::SimpleAtod(args[i], &v)) Die(absl::StrCat(what, " must be a number"));
      if (i >= args.size() && fallback < 0 && absl::GetFlag(FLAGS_json).empty()) {
        Die(absl::StrCat("missing ", what));
      }
      return v;
    };
    r.set_on_hand(number(2, "ON_HAND", -1));
    r.set_lead_time_days(number(3, "LEAD_DAYS", -1));
    r.set_review_period_days(static_cast<int>(number(4, "REVIEW_DAYS", 7)));
    r.set_cycle_service_level(number(5, "SERVICE_LEVEL", 0.95));
    r.set_on_order(absl::GetFlag(FLAGS_on_order));
    r.set_lead_time_sd_days(absl::GetFlag(FLAGS_lead_sd_days));
    return Call(*forecasting, &v1::Forecasting::Stub::PlanInventory, r);
  }
  if (cmd == "score") {
    v1::Order r;
    const std::string json = Arg(args, 1, "ORDER_JSON");
    if (!json.empty()) FromJson(json, &r);
    return Call(*fraud, &v1::Fraud::Stub::Score, r);
  }
  Die(absl::StrCat("unknown command '", cmd, "'; see 'mercatoctl help'"));
}

}  // namespace
}  // namespace mercato::clients

int main(int argc, char** argv) {
  std::vector<char*> positional = mercato::core::ParseCommandLine(
      argc, argv,
      "mercatoctl [--target=host:port] COMMAND [args]\n"
      "  status | checkpoint | retrain [MODEL] | delete-user USER | backup NAME\n"
      "  publish FILE (CSV with header, or JSON lines; '-' = stdin) | read-events [FROM [LIMIT]]\n"
      "  catalog upsert FILE | catalog get ITEM | catalog delete ITEM\n"
      "  recommend USER [COUNT] (--arm) | similar ITEM [COUNT] | bought-together ITEM [COUNT]\n"
      "  experiments (what each experiment arm's recommendations led to)\n"
      "  segment USER | segments | elasticity ITEM|category=NAME [PRICE...] | score ORDER_JSON\n"
      "  forecast ITEM|category=NAME [DAYS] (--plot=FILE.svg)\n"
      "  plan ITEM ON_HAND LEAD_DAYS [REVIEW_DAYS [SERVICE_LEVEL]] (--on_order, --lead_sd_days)\n"
      "  demo (loads the seeded demo shop) | help (this list)\n"
      "Any request may be given whole with --json='{...}'.");
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  return mercato::clients::Main(args);
}
