// mercato-bench: load generator. Measures, in one run, the floor of a bare
// gRPC echo server (started as a child process, on the completion-queue or the
// callback API) and the RPCs of a running mercato-server: calls/s and latency
// percentiles, closed loop with --in_flight calls outstanding.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "clients/client_util.h"
#include "core/command_line.h"
#include "testing/demo_shop.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/echo.grpc.pb.h"
#include "mercato/v1/forecasting.grpc.pb.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"

ABSL_FLAG(
    std::string, target, "127.0.0.1:50051",
    "mercato-server address; replicas as host:port,host:port (round robin over the serving ones)");
ABSL_FLAG(std::string, rpcs, "echo,ingest",
          "comma list of: echo, echo-callback, ingest, demo (demo-shop generation speed), "
          "load-demo (publish the demo shop to --target and wait until it is applied), "
          "elasticity (PriceElasticity on the demo shop's items), "
          "segment (Segment on the demo shop's customers), "
          "forecast (ForecastDemand, 28 days, of the demo shop's items), "
          "plan (PlanInventory of the demo shop's items), "
          "score (Fraud.Score of fresh orders from 5,000 customers), "
          "load-catalog (upsert --catalog_items items, each with its taste as its category and a "
          "brand, publish their planted-taste events, retrain, wait for the retrain and its "
          "index), recommend (Recommend for the catalogue's users), "
          "freshness (--trials purchases: delay until Recommend excludes the bought item), "
          "similar, bought-together (on the catalogue's items), list-segments, get-item, "
          "upsert-item (one catalogue item per call), model-status");
ABSL_FLAG(int, catalog_items, 100000,
          "load-catalog: items of core::PlantedTasteEvents (each gets two interactions)");
ABSL_FLAG(int, catalog_tastes, 64, "load-catalog: taste clusters of items and users");
ABSL_FLAG(int, trials, 1000, "freshness: purchases measured");
ABSL_FLAG(std::string, freshness_read_target, "",
          "freshness: read the recommendations from this replica (default: --target, where the "
          "purchases are published)");
ABSL_FLAG(int, demo_users, 7000, "demo: customers of the generated shop (7000 = about 1M events)");
ABSL_FLAG(int, demo_items, 400, "demo: products of the generated shop");
ABSL_FLAG(int, demo_days, 120, "demo: days of history of the generated shop");
ABSL_FLAG(int, demo_demand_items, 0, "demo: products with planted daily demand");
ABSL_FLAG(int, score_attributes, 0,
          "score: attributes per order (half numbers, half texts; 0..64)");
ABSL_FLAG(int, score_line_items, 0, "score: line items per order (0..1000)");
ABSL_FLAG(int, score_orders, 0,
          "score: cycle over this many order ids (re-scores after the first round); 0 = a new "
          "order every call");
ABSL_FLAG(int, in_flight, 16, "calls kept outstanding (closed loop)");
ABSL_FLAG(int, deadline_ms, 10000,
          "each call's deadline, from its (intended) send time; goodput counts the calls "
          "answered OK within it");
ABSL_FLAG(double, rate, 0,
          "open loop: calls per second at fixed intervals, latency from each call's intended "
          "send time (0 = closed loop with --in_flight)");
ABSL_FLAG(std::string, json_out, "", "if set, every result is also written here as JSON");
ABSL_FLAG(double, seconds, 5, "duration of each measurement");
ABSL_FLAG(int, batch, 1000, "events per PublishBatch call (ingest)");
ABSL_FLAG(int, echo_threads, 1,
          "completion-queue threads of the async echo server (the server's --cq_threads default)");
// Internal: run as the echo server child.
ABSL_FLAG(std::string, serve_echo, "", "internal: serve echo with this API and exit");

namespace mercato::clients {
namespace {

using v1::EchoMessage;

class EchoCallback final : public v1::Echo::CallbackService {
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const EchoMessage* req,
                                 EchoMessage* resp) override {
    *resp = *req;
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// The classic completion-queue echo: one pending call per queue, handled
// inline on the queue's thread.
class EchoAsyncCall {
 public:
  EchoAsyncCall(v1::Echo::AsyncService* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), writer_(&ctx_) {
    service_->RequestEcho(&ctx_, &request_, &writer_, cq_, cq_, this);
  }
  void Proceed(bool ok) {
    if (finished_ || !ok) {
      delete this;
      return;
    }
    new EchoAsyncCall(service_, cq_);
    finished_ = true;
    writer_.Finish(request_, grpc::Status::OK, this);
  }

 private:
  v1::Echo::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  EchoMessage request_;
  grpc::ServerAsyncResponseWriter<EchoMessage> writer_;
  bool finished_ = false;
};

// Runs one measurement for --seconds: open loop at --rate calls/s, or a
// closed loop with --in_flight calls.
template <class Resp>
LoadResult Run(StartCallFn<Resp> start) {
  if (absl::GetFlag(FLAGS_rate) > 0) {
    return RunOpenLoop<Resp>(absl::GetFlag(FLAGS_rate), absl::GetFlag(FLAGS_seconds),
                             std::chrono::milliseconds(absl::GetFlag(FLAGS_deadline_ms)),
                             std::move(start));
  }
  return RunClosedLoop<Resp>(absl::GetFlag(FLAGS_in_flight), absl::GetFlag(FLAGS_seconds),
                             std::chrono::milliseconds(absl::GetFlag(FLAGS_deadline_ms)),
                             std::move(start));
}

// Serves echo on a free loopback port, writes the port to stdout, runs until
// killed.
int ServeEcho(const std::string& api, int threads) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  EchoCallback callback_service;
  v1::Echo::AsyncService async_service;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
  if (api == "callback") {
    builder.RegisterService(&callback_service);
  } else {
    builder.RegisterService(&async_service);
    for (int i = 0; i < threads; ++i) cqs.push_back(builder.AddCompletionQueue());
  }
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  std::printf("%d\n", port);
  std::fflush(stdout);
  std::vector<std::thread> workers;
  for (auto& cq : cqs) {
    workers.emplace_back([&service = async_service, cq = cq.get()] {
      new EchoAsyncCall(&service, cq);
      void* tag;
      bool ok;
      while (cq->Next(&tag, &ok)) static_cast<EchoAsyncCall*>(tag)->Proceed(ok);
    });
  }
  server->Wait();
  return 0;
}

// Starts this binary as an echo server child; returns its pid and port.
std::pair<pid_t, int> SpawnEcho(const std::string& api) {
  int fds[2];
  if (pipe(fds) != 0) return {-1, 0};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    std::string threads = absl::StrCat("--echo_threads=", absl::GetFlag(FLAGS_echo_threads));
    std::string serve = absl::StrCat("--serve_echo=", api);
    execl("/proc/self/exe", "mercato-bench", serve.c_str(), threads.c_str(), nullptr);
    _exit(127);
  }
  close(fds[1]);
  FILE* in = fdopen(fds[0], "r");
  int port = 0;
  if (std::fscanf(in, "%d", &port) != 1) port = 0;
  std::fclose(in);
  return {pid, port};
}

LoadResult BenchEcho(const std::string& api) {
  auto [pid, port] = SpawnEcho(api);
  if (pid <= 0 || port == 0) {
    std::cerr << "could not start the echo server\n";
    std::exit(1);
  }
  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", port));
  WaitForReady(*channel, std::chrono::seconds(10));
  auto stub = v1::Echo::NewStub(channel);
  EchoMessage request;
  request.set_payload(std::string(32, 'x'));
  auto result =
      Run<EchoMessage>([&](uint64_t, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        return stub->AsyncEcho(ctx, request, cq);
      });
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return result;
}

// Durable ingest: PublishBatch calls of --batch fresh events each. QPS and
// latencies are per batch; events/s = QPS x batch.
LoadResult BenchIngest(v1::Ingest::Stub& stub) {
  const int batch = absl::GetFlag(FLAGS_batch);
  const std::string run = absl::StrCat(getpid(), "-", time(nullptr));
  return Run<v1::PublishSummary>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::EventBatch request;
        const int64_t now_ms = time(nullptr) * 1000;
        for (int i = 0; i < batch; ++i) {
          v1::Event* e = request.add_events();
          e->set_event_id(absl::StrCat("bench-", run, "-", call, "-", i));
          e->set_type(i % 10 == 0 ? v1::PURCHASE : v1::VIEW);
          e->set_user_id(absl::StrCat("u", (call * 7919 + i) % 100000));
          e->set_item_id(absl::StrCat("i", (call * 104729 + i * 31) % 20000));
          e->set_timestamp_ms(now_ms);
          if (e->type() == v1::PURCHASE) {
            e->set_quantity(1);
            e->set_unit_price(9.99);
          }
        }
        return stub.AsyncPublishBatch(ctx, request, cq);
      });
}

core::DemoShopOptions DemoOptions() {
  core::DemoShopOptions o;
  o.users = absl::GetFlag(FLAGS_demo_users);
  o.items = absl::GetFlag(FLAGS_demo_items);
  o.days = absl::GetFlag(FLAGS_demo_days);
  o.demand_items = absl::GetFlag(FLAGS_demo_demand_items);
  return o;
}

// Publishes the demo shop and waits until the learner has applied it.
void LoadDemo(const std::shared_ptr<grpc::Channel>& channel) {
  const auto start = std::chrono::steady_clock::now();
  v1::PublishSummary summary;
  CheckOrExit(LoadDemoShop(*channel, core::GenerateDemoShop(DemoOptions()), 5000, &summary),
              "load-demo");
  CheckOrExit(WaitApplied(*channel), "load-demo");
  std::printf("demo shop loaded: %lu new events, %lu duplicates, applied in %.1f s\n",
              summary.accepted(), summary.duplicates(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  // The learner's time per event in each model since the server started.
  v1::ModelStatusResponse st;
  grpc::ClientContext ctx;
  const grpc::Status status = v1::Admin::NewStub(channel)->ModelStatus(&ctx, v1::ModelStatusRequest(), &st);
  if (!status.ok()) return;
  for (const v1::ModelInfo& m : st.models()) {
    const auto count = [&](const char* name) {
      return m.counts().contains(name) ? static_cast<double>(m.counts().at(name)) : 0.0;
    };
    if (count("applied_events") > 0) {
      std::printf("  %-10s learner %.2f us an event (%.0f events)\n", m.name().c_str(),
                  count("apply_ns") / count("applied_events") / 1000, count("applied_events"));
    }
  }
}

LoadResult BenchElasticity(v1::Pricing::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_demo_items);
  return Run<v1::PriceElasticityResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::PriceElasticityRequest req;
        req.set_item_id(absl::StrCat("item", call * 7919 % items));
        for (double p : {5.0, 10.0, 20.0}) req.add_candidate_prices(p);
        return stub.AsyncPriceElasticity(ctx, req, cq);
      });
}

LoadResult BenchForecast(v1::Forecasting::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_demo_items);
  return Run<v1::ForecastDemandResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::ForecastDemandRequest req;
        req.set_item_id(absl::StrCat("item", call * 7919 % items));
        req.set_horizon_days(28);
        return stub.AsyncForecastDemand(ctx, req, cq);
      });
}

LoadResult BenchPlan(v1::Forecasting::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_demo_items);
  return Run<v1::PlanInventoryResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::PlanInventoryRequest req;
        req.set_item_id(absl::StrCat("item", call * 7919 % items));
        req.set_on_hand(20);
        req.set_lead_time_days(5);
        req.set_lead_time_sd_days(1);
        req.set_review_period_days(7);
        req.set_cycle_service_level(0.95);
        return stub.AsyncPlanInventory(ctx, req, cq);
      });
}

LoadResult BenchSegment(v1::Segmenter::Stub& stub) {
  const int users = absl::GetFlag(FLAGS_demo_users);
  return Run<v1::SegmentResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::SegmentRequest req;
        // Every fifth demo user is a champion, who has always bought.
        req.set_user_id(absl::StrCat("user", call * 5 % users));
        return stub.AsyncSegment(ctx, req, cq);
      });
}

LoadResult BenchScore(v1::Fraud::Stub& stub) {
  const std::string run = absl::StrCat("bench-", getpid(), "-", time(nullptr), "-");
  const int64_t now_ms = time(nullptr) * 1000LL;
  const int cycle = absl::GetFlag(FLAGS_score_orders);
  // One order per customer, built before the clock starts, as the echo
  // request is: each call then sets only what changes (a call's request is
  // serialised when it starts, so the next may reuse the object).
  std::vector<v1::Order> orders(5000);
  for (size_t customer = 0; customer < orders.size(); ++customer) {
    v1::Order& o = orders[customer];
    o.set_user_id(absl::StrCat("buyer", customer));
    o.set_currency("EUR");
    o.set_payment_fingerprint(absl::StrCat("card", customer));
    o.set_device_id(absl::StrCat("device", customer));
    o.set_shipping_address_hash(absl::StrCat("address", customer));
    o.set_billing_country("DE");
    o.set_shipping_country("DE");
    o.set_account_created_ms(now_ms - 86400000LL * (1 + customer % 700));
    o.set_timestamp_ms(now_ms);
    for (int a = 0; a < absl::GetFlag(FLAGS_score_attributes); ++a) {
      v1::AttributeValue& v = (*o.mutable_attributes())[absl::StrCat("attribute", a)];
      if (a % 2 == 0) {
        v.set_number(static_cast<double>((customer * 31 + a) % 100));
      } else {
        v.set_text(absl::StrCat("value", (customer + a) % 7));
      }
    }
    for (int l = 0; l < absl::GetFlag(FLAGS_score_line_items); ++l) {
      v1::LineItem* line = o.add_line_items();
      line->set_item_id(absl::StrCat("ci", (customer * 13 + l * 101) % 1000));
      line->set_quantity(1 + l % 3);
      line->set_unit_price(5 + (customer + l) % 90);
    }
  }
  return Run<v1::ScoreResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::Order& o = orders[call * 7919 % orders.size()];
        std::string* id = o.mutable_order_id();
        id->assign(run);
        absl::StrAppend(id, cycle > 0 ? call % cycle : call);
        o.set_amount(10 + static_cast<double>(call % 200));
        o.set_ip_country(call % 50 == 0 ? "NG" : "DE");
        return stub.AsyncScore(ctx, o, cq);
      });
}

std::string CatalogUser(uint64_t n) { return absl::StrCat("cu", n); }

uint64_t CatalogUsers() { return std::max(1, absl::GetFlag(FLAGS_catalog_items) / 4); }

void LoadCatalog(const std::shared_ptr<grpc::Channel>& channel) {
  const auto start = std::chrono::steady_clock::now();
  const int items = absl::GetFlag(FLAGS_catalog_items);
  const uint64_t users = CatalogUsers();
  const int tastes = absl::GetFlag(FLAGS_catalog_tastes);
  // The catalogue first: each item's taste as its category, and a brand.
  std::vector<v1::Item> catalogue(items);
  for (int i = 0; i < items; ++i) {
    catalogue[i].set_item_id(absl::StrCat("ci", i));
    catalogue[i].add_category_path(absl::StrCat("taste-", i % tastes));
    catalogue[i].set_price(5 + i % 90);
    (*catalogue[i].mutable_attributes())["brand"] = absl::StrCat("brand-", i % 97);
  }
  CheckOrExit(UpsertItems(*channel, catalogue, 5000).status(), "load-catalog");
  std::vector<v1::Event> events;
  for (const core::Event& e : core::PlantedTasteEvents(items, tastes, time(nullptr) * 1000LL)) {
    events.push_back(ToProto(e));
  }
  v1::PublishSummary summary;
  CheckOrExit(PublishEvents(*channel, events, 5000, &summary), "load-catalog");
  CheckOrExit(WaitApplied(*channel), "load-catalog");
  const double applied =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CheckOrExit(RetrainRecommendations(*channel), "load-catalog");
  const absl::StatusOr<uint64_t> indexed = ModelCount(*channel, "recommend", "hnsw_items");
  CheckOrExit(indexed.status(), "load-catalog");
  std::printf(
      "catalogue: %d items, %lu users, %zu events applied in %.1f s, retrained in %.1f s; "
      "%lu items in the HNSW index\n",
      items, users, events.size(), applied,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() - applied,
      *indexed);
}

LoadResult BenchRecommend(v1::Recommender::Stub& stub) {
  const uint64_t users = CatalogUsers();
  return Run<v1::RecommendResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::RecommendRequest req;
        req.set_user_id(CatalogUser(call * 7919 % users));
        req.set_count(10);
        req.mutable_filter()->set_exclude_purchased(true);
        return stub.AsyncRecommend(ctx, req, cq);
      });
}

// The other unary RPCs, on the load-catalog / demo data where they need any.
LoadResult BenchSimilar(v1::Recommender::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_catalog_items);
  return Run<v1::RecommendResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::SimilarItemsRequest req;
        req.set_item_id(absl::StrCat("ci", call * 7919 % items));
        req.set_count(10);
        return stub.AsyncSimilarItems(ctx, req, cq);
      });
}

LoadResult BenchBoughtTogether(v1::Recommender::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_catalog_items);
  return Run<v1::BoughtTogetherResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::BoughtTogetherRequest req;
        req.set_item_id(absl::StrCat("ci", call * 7919 % items));
        req.set_count(10);
        req.set_min_support(1);
        return stub.AsyncBoughtTogether(ctx, req, cq);
      });
}

LoadResult BenchListSegments(v1::Segmenter::Stub& stub) {
  return Run<v1::ListSegmentsResponse>(
      [&](uint64_t, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        return stub.AsyncListSegments(ctx, v1::ListSegmentsRequest(), cq);
      });
}

LoadResult BenchGetItem(v1::Catalog::Stub& stub) {
  const int items = absl::GetFlag(FLAGS_demo_items);
  return Run<v1::Item>([&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
    v1::GetItemRequest req;
    req.set_item_id(absl::StrCat("item", call * 7919 % items));
    return stub.AsyncGetItem(ctx, req, cq);
  });
}

LoadResult BenchUpsertItem(v1::Catalog::Stub& stub) {
  return Run<v1::UpsertItemsResponse>(
      [&](uint64_t call, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        v1::UpsertItemsRequest req;
        v1::Item* item = req.add_items();
        item->set_item_id(absl::StrCat("bench-item", call % 1000));
        item->add_category_path("bench");
        item->set_price(1 + static_cast<double>(call % 100));
        item->set_in_stock(true);
        return stub.AsyncUpsertItems(ctx, req, cq);
      });
}

LoadResult BenchModelStatus(v1::Admin::Stub& stub) {
  return Run<v1::ModelStatusResponse>(
      [&](uint64_t, grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        return stub.AsyncModelStatus(ctx, v1::ModelStatusRequest(), cq);
      });
}

// Per trial: a user buys their current top item; the delay is from sending
// the purchase until a Recommend no longer returns the item.
void BenchFreshness(const std::shared_ptr<grpc::Channel>& channel) {
  const std::string read_target = absl::GetFlag(FLAGS_freshness_read_target);
  auto rec = v1::Recommender::NewStub(
      read_target.empty() ? channel : MakeChannel(read_target, ClientAuthFromFlags()));
  auto ingest = v1::Ingest::NewStub(channel);
  const uint64_t users = CatalogUsers();
  const std::string run = absl::StrCat(getpid(), "-", time(nullptr));
  std::vector<double> delays_us;
  int lost = 0;
  for (int t = 0; t < absl::GetFlag(FLAGS_trials); ++t) {
    v1::RecommendRequest req;
    req.set_user_id(CatalogUser(static_cast<uint64_t>(t) * 104729 % users));
    req.set_count(10);
    req.mutable_filter()->set_exclude_purchased(true);
    v1::RecommendResponse resp;
    grpc::ClientContext ask;
    if (!rec->Recommend(&ask, req, &resp).ok() || resp.items_size() == 0) {
      ++lost;
      continue;
    }
    const std::string top = resp.items(0).item_id();
    v1::EventBatch batch;
    v1::Event* e = batch.add_events();
    e->set_event_id(absl::StrCat("fresh-", run, "-", t));
    e->set_type(v1::PURCHASE);
    e->set_user_id(req.user_id());
    e->set_item_id(top);
    e->set_quantity(1);
    e->set_unit_price(10);
    e->set_timestamp_ms(time(nullptr) * 1000LL);
    const auto sent = std::chrono::steady_clock::now();
    grpc::ClientContext pub;
    v1::PublishSummary summary;
    if (!ingest->PublishBatch(&pub, batch, &summary).ok()) {
      ++lost;
      continue;
    }
    for (bool seen = true; seen;) {
      grpc::ClientContext again;
      resp.Clear();
      if (!rec->Recommend(&again, req, &resp).ok()) break;
      seen = std::any_of(resp.items().begin(), resp.items().end(),
                         [&](const v1::ScoredItem& i) { return i.item_id() == top; });
      if (std::chrono::steady_clock::now() - sent > std::chrono::seconds(10)) break;
    }
    delays_us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - sent).count());
  }
  LoadResult r;
  r.calls = delays_us.size();
  r.errors = lost;
  FillPercentiles(delays_us, r);
  std::printf(
      "freshness over %lu purchases (%d failed): event-to-visible p50 %.1f ms, p90 %.1f ms, "
      "p99 %.1f ms, max %.1f ms\n",
      r.calls, lost, r.p50_us / 1000, r.p90_us / 1000, r.p99_us / 1000,
      delays_us.empty() ? 0.0 : delays_us.back() / 1000);
}

// One measured RPC, for the JSON report.
struct Measured {
  std::string name;
  LoadResult result;
  // Closed loop: goodput over the echo floor's; open loop: p99 over its p99. 0 when
  // no echo floor was measured before it.
  double ratio_to_echo = 0;
};

std::string ToJson(const std::vector<Measured>& all) {
  std::string out = "[\n";
  for (size_t i = 0; i < all.size(); ++i) {
    const LoadResult& r = all[i].result;
    absl::StrAppendFormat(
        &out,
        "  {\"rpc\": \"%s\", \"calls\": %d, \"errors\": %d, \"qps\": %.1f, \"p50_us\": %.1f, "
        "\"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"goodput\": %.1f, "
        "\"ok_p99_us\": %.1f, \"ratio_to_echo\": %.3f}%s\n",
        all[i].name, r.calls, r.errors, r.qps, r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.goodput,
        r.ok_p99_us, all[i].ratio_to_echo, i + 1 < all.size() ? "," : "");
  }
  return out + "]\n";
}

int Main() {
  const std::vector<std::string> rpcs = absl::StrSplit(absl::GetFlag(FLAGS_rpcs), ',');
  if (absl::GetFlag(FLAGS_rate) > 0) {
    std::printf("machine: %u cores; open loop at %.0f calls/s, seconds=%.1f\n",
                std::thread::hardware_concurrency(), absl::GetFlag(FLAGS_rate),
                absl::GetFlag(FLAGS_seconds));
  } else {
    std::printf("machine: %u cores; closed loop, in_flight=%d seconds=%.1f\n",
                std::thread::hardware_concurrency(), absl::GetFlag(FLAGS_in_flight),
                absl::GetFlag(FLAGS_seconds));
  }
  std::shared_ptr<grpc::Channel> channel;
  // The floor that model RPCs are compared with: its calls/s in a closed
  // loop; in an open loop (same rate for all) its p99.
  LoadResult echo;
  const bool open_loop = absl::GetFlag(FLAGS_rate) > 0;
  std::vector<Measured> measured;
  auto report = [&](const std::string& name, const LoadResult& r, bool compare) {
    std::printf("%s\n", FormatLoadResult(name, r).c_str());
    Measured m{name, r, 0};
    if (compare && echo.calls > 0) {
      m.ratio_to_echo = open_loop ? r.p99_us / echo.p99_us : r.goodput / echo.goodput;
      if (open_loop) {
        std::printf("  p99 %.1fx the echo floor's\n", m.ratio_to_echo);
      } else {
        std::printf("  %.0f%% of the echo floor\n", 100 * m.ratio_to_echo);
      }
    }
    if (r.errors) std::printf("  first error: %s\n", r.first_error.c_str());
    measured.push_back(std::move(m));
  };
  for (const std::string& rpc : rpcs) {
    if (rpc == "demo") {
      const core::DemoShopOptions o = DemoOptions();
      const auto start = std::chrono::steady_clock::now();
      const core::DemoShop shop = core::GenerateDemoShop(o);
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("demo shop: %zu events, %zu orders, %d users in %.2f s (%.0f events/s)\n",
                  shop.events.size(), shop.orders.size(), o.users, s, shop.events.size() / s);
      continue;
    }
    if (rpc == "echo" || rpc == "echo-callback") {
      const LoadResult r = BenchEcho(rpc == "echo" ? "async" : "callback");
      report(rpc == "echo" ? "echo (async API)" : "echo (callback API)", r, false);
      if (rpc == "echo") echo = r;
      continue;
    }
    if (!channel) {
      channel = MakeChannel(absl::GetFlag(FLAGS_target), ClientAuthFromFlags());
      if (!WaitForReady(*channel, std::chrono::seconds(10))) {
        std::cerr << "cannot reach " << absl::GetFlag(FLAGS_target) << "\n";
        return 1;
      }
    }
    if (rpc == "ingest") {
      auto stub = v1::Ingest::NewStub(channel);
      const LoadResult r = BenchIngest(*stub);
      report(absl::StrCat("PublishBatch x", absl::GetFlag(FLAGS_batch)), r, false);
      std::printf("  durable ingest: %.0f events/s\n", r.qps * absl::GetFlag(FLAGS_batch));
    } else if (rpc == "load-demo") {
      LoadDemo(channel);
    } else if (rpc == "load-catalog") {
      LoadCatalog(channel);
    } else if (rpc == "recommend") {
      auto stub = v1::Recommender::NewStub(channel);
      report("Recommend", BenchRecommend(*stub), true);
    } else if (rpc == "freshness") {
      BenchFreshness(channel);
    } else if (rpc == "score") {
      auto stub = v1::Fraud::NewStub(channel);
      report("Score", BenchScore(*stub), true);
    } else if (rpc == "segment") {
      auto stub = v1::Segmenter::NewStub(channel);
      report("Segment", BenchSegment(*stub), true);
    } else if (rpc == "elasticity") {
      auto stub = v1::Pricing::NewStub(channel);
      report("PriceElasticity", BenchElasticity(*stub), true);
    } else if (rpc == "forecast") {
      auto stub = v1::Forecasting::NewStub(channel);
      report("ForecastDemand", BenchForecast(*stub), true);
    } else if (rpc == "plan") {
      auto stub = v1::Forecasting::NewStub(channel);
      report("PlanInventory", BenchPlan(*stub), true);
    } else if (rpc == "similar") {
      auto stub = v1::Recommender::NewStub(channel);
      report("SimilarItems", BenchSimilar(*stub), true);
    } else if (rpc == "bought-together") {
      auto stub = v1::Recommender::NewStub(channel);
      report("BoughtTogether", BenchBoughtTogether(*stub), true);
    } else if (rpc == "list-segments") {
      auto stub = v1::Segmenter::NewStub(channel);
      report("ListSegments", BenchListSegments(*stub), true);
    } else if (rpc == "get-item") {
      auto stub = v1::Catalog::NewStub(channel);
      report("GetItem", BenchGetItem(*stub), true);
    } else if (rpc == "upsert-item") {
      auto stub = v1::Catalog::NewStub(channel);
      report("UpsertItems x1", BenchUpsertItem(*stub), true);
    } else if (rpc == "model-status") {
      auto stub = v1::Admin::NewStub(channel);
      report("ModelStatus", BenchModelStatus(*stub), true);
    } else {
      std::cerr << "unknown rpc " << rpc << "\n";
      return 2;
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream(path) << ToJson(measured);
  }
  return 0;
}

}  // namespace
}  // namespace mercato::clients

int main(int argc, char** argv) {
  mercato::core::ParseCommandLine(argc, argv,
                                  "load generator against a Mercato server, or "
                                  "the bare gRPC echo floor (--serve_echo)");
  // As mercato-server does (see server/main.cc), for the echo server and the
  // load client alike.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (!absl::GetFlag(FLAGS_serve_echo).empty()) {
    return mercato::clients::ServeEcho(absl::GetFlag(FLAGS_serve_echo),
                                       absl::GetFlag(FLAGS_echo_threads));
  }
  return mercato::clients::Main();
}
