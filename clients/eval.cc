// mercato-eval: offline evaluation of the recommender through the public API
// only. Replays a transactions file into a running server with each
// customer's last order held out, retrains, then asks Recommend:
//   - over all items, already-purchased items excluded (HR@K, NDCG@K);
//   - over a candidate list of one held-out item and N sampled negatives
//     (candidate_item_ids).
// The personal model answers for the customer; popularity answers for a user
// the server has never seen (with the customer's purchases excluded).
//
//   mercato-server --data_dir=/tmp/eval --rec_retrain_every=0 &
//   mercato-eval --target=127.0.0.1:50051
//       --data=../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz
//
// With automatic retrains off, the retrain asked for here is the one
// evaluated and the figures repeat exactly.
//
// With --data=demo it replays the seeded demo shop (testing/demo_shop.h) day by
// day instead: its events go to Ingest and every order to Fraud.Score (which
// records it), so fraud labels, a week late, train on what was known at
// scoring time. It then prints the fraud AUC and decision mix over the last
// --holdout_days days' orders against the planted frauds, the elasticity
// error against the planted elasticities, and the recommendation metrics.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "clients/transactions.h"
#include "core/command_line.h"
#include "testing/demo_shop.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/pricing.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "mercato-server address (an empty shop)");
ABSL_FLAG(std::string, data, "../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz",
          "transactions file");
ABSL_FLAG(std::string, format, "online-retail",
          "online-retail, or generic: user,item,timestamp[,price,quantity,order]");
ABSL_FLAG(int, k, 10, "cut-off K of HR@K and NDCG@K");
ABSL_FLAG(int, negatives, 100, "sampled negatives per candidate list");
ABSL_FLAG(bool, validation, false,
          "leave each customer's last order out entirely and hold out the order before it: a "
          "validation split for choosing flags without looking at the test orders");
ABSL_FLAG(int, max_users, 0, "evaluate at most this many customers (0 = all)");
ABSL_FLAG(int, demo_users, 12000, "demo: customers of the generated shop");
ABSL_FLAG(int, demo_items, 100, "demo: products of the generated shop");
ABSL_FLAG(int, holdout_days, 30,
          "demo: fraud is evaluated on the orders of the last this many days");

namespace mercato::clients {
namespace {

constexpr char kStranger[] = "mercato-eval-stranger";
constexpr int kMaxExcluded = 1000;

// Sums of HR@K and NDCG@K over the evaluated customers.
struct Metric {
  double hits = 0, ndcg = 0;
  void Add(const v1::RecommendResponse& r, const std::set<std::string>& targets, int k) {
    double dcg = 0, ideal = 0;
    for (int i = 0; i < r.items_size() && i < k; ++i) {
      if (targets.contains(r.items(i).item_id())) dcg += 1 / std::log2(i + 2.0);
    }
    for (int i = 0; i < k && i < static_cast<int>(targets.size()); ++i)
      ideal += 1 / std::log2(i + 2.0);
    hits += dcg > 0;
    ndcg += dcg / ideal;
  }
};

void Publish(grpc::Channel& channel, const std::vector<v1::Event>& events) {
  v1::PublishSummary summary;
  CheckOrExit(PublishEvents(channel, events, 5000, &summary), "PublishBatch");
}

// Each customer's last order (latest timestamp, then largest id), for the
// customers with at least two orders; guests are left out.
std::map<std::string, std::string> LastOrders(const std::vector<v1::Event>& events) {
  std::map<std::string, std::pair<int64_t, std::string>> last;
  std::map<std::string, std::set<std::string>> orders;
  for (const v1::Event& e : events) {
    if (e.type() != v1::PURCHASE || e.user_id().rfind("guest-", 0) == 0) continue;
    orders[e.user_id()].insert(e.order_id());
    last[e.user_id()] = std::max(last[e.user_id()], {e.timestamp_ms(), e.order_id()});
  }
  std::map<std::string, std::string> out;
  for (const auto& [user, when] : last) {
    if (orders[user].size() >= 2) out[user] = when.second;
  }
  return out;
}

bool HeldOut(const std::map<std::string, std::string>& last, const v1::Event& e) {
  auto it = last.find(e.user_id());
  return it != last.end() && e.order_id() == it->second;
}

// Area under the ROC curve of `scored` (score, is positive), ties counted half.
double Auc(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end());
  double positives = 0, negatives = 0, rank_sum = 0;
  for (size_t i = 0; i < scored.size();) {
    size_t j = i;
    while (j < scored.size() && scored[j].first == scored[i].first) ++j;
    const double mid_rank = (i + j + 1) / 2.0;  // 1-based average rank of the tie
    for (size_t t = i; t < j; ++t) {
      if (scored[t].second) {
        rank_sum += mid_rank;
        ++positives;
      } else {
        ++negatives;
      }
    }
    i = j;
  }
  if (positives == 0 || negatives == 0) return 0;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

v1::Order OrderOf(const core::DemoOrder& o) {
  v1::Order out;
  out.set_order_id(o.order_id);
  out.set_user_id(o.user_id);
  out.set_amount(o.amount);
  out.set_currency(o.currency);
  out.set_payment_fingerprint(o.payment_fingerprint);
  out.set_billing_country(o.billing_country);
  out.set_shipping_country(o.shipping_country);
  out.set_ip_country(o.ip_country);
  out.set_device_id(o.device_id);
  out.set_shipping_address_hash(o.shipping_address_hash);
  out.set_account_created_ms(o.account_created_ms);
  out.set_timestamp_ms(o.timestamp_ms);
  return out;
}

// The demo shop, day by day: that day's events, then its orders scored.
// Returns the transactions as rows for the recommendation part.
std::vector<Row> ReplayDemo(grpc::Channel& channel) {
  core::DemoShopOptions options;
  options.users = absl::GetFlag(FLAGS_demo_users);
  options.items = absl::GetFlag(FLAGS_demo_items);
  const core::DemoShop shop = core::GenerateDemoShop(options);
  std::vector<v1::Item> items;
  for (const core::DemoItem& it : shop.items) items.push_back(ToProto(it.item));
  CheckOrExit(UpsertItems(channel, items, 5000).status(), "UpsertItems");
  auto fraud = v1::Fraud::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  const int64_t day_ms = 24LL * 3600 * 1000;
  const int64_t holdout_from =
      options.start_ms + (options.days - absl::GetFlag(FLAGS_holdout_days)) * day_ms;
  std::vector<v1::Event> all;
  for (const core::Event& ev : shop.events) all.push_back(ToProto(ev));
  const std::map<std::string, std::string> last = LastOrders(all);
  std::vector<std::pair<double, bool>> scored;
  std::map<v1::Decision, int> decisions;
  int caught = 0, frauds = 0;
  size_t e = 0, o = 0;
  for (int64_t day_end = options.start_ms + day_ms;
       e < shop.events.size() || o < shop.orders.size(); day_end += day_ms) {
    std::vector<v1::Event> today;
    for (; e < shop.events.size() && shop.events[e].timestamp_ms < day_end; ++e) {
      // The recommendation part holds each customer's last order out.
      if (all[e].type() != v1::PURCHASE || !HeldOut(last, all[e])) today.push_back(all[e]);
    }
    if (!today.empty()) Publish(channel, today);
    for (; o < shop.orders.size() && shop.orders[o].timestamp_ms < day_end; ++o) {
      const core::DemoOrder& order = shop.orders[o];
      v1::ScoreResponse r;
      CheckOrExit(fraud->Score(Deadline(30).get(), OrderOf(order), &r), "Score");
      if (order.timestamp_ms < holdout_from) continue;
      const bool is_fraud = order.fraud != core::DemoFraud::kNone;
      scored.push_back({r.probability(), is_fraud});
      ++decisions[r.decision()];
      frauds += is_fraud;
      caught += is_fraud && r.decision() != v1::APPROVE;
    }
    CheckOrExit(WaitApplied(channel), "ModelStatus");
  }
  std::printf(
      "fraud, %zu orders of the last %d days (%d planted frauds): AUC %.4f; "
      "approve %d, review %d, decline %d; %d of %d frauds not approved\n",
      scored.size(), absl::GetFlag(FLAGS_holdout_days), frauds, Auc(scored), decisions[v1::APPROVE],
      decisions[v1::REVIEW], decisions[v1::DECLINE], caught, frauds);

  auto pricing = v1::Pricing::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](auto*) {}));
  double error = 0;
  int estimated = 0, covered = 0;
  for (const core::DemoItem& it : shop.items) {
    v1::PriceElasticityRequest req;
    req.set_item_id(it.item.item_id);
    v1::PriceElasticityResponse r;
    if (!pricing->PriceElasticity(Deadline(30).get(), req, &r).ok() || !r.has_estimate()) continue;
    ++estimated;
    error += std::abs(r.elasticity() - it.elasticity);
    covered += r.ci_low() <= it.elasticity && it.elasticity <= r.ci_high();
  }
  std::printf(
      "elasticity, %d of %zu items estimated: mean absolute error %.3f against the "
      "planted values, 95%% intervals cover %.2f\n",
      estimated, shop.items.size(), estimated ? error / estimated : 0,
      estimated ? static_cast<double>(covered) / estimated : 0);

  std::vector<Row> rows;
  for (const core::Event& ev : shop.events) {
    if (ev.type != core::EventType::kPurchase) continue;
    rows.push_back(
        {ev.order_id, ev.item_id, "", ev.user_id, ev.quantity, ev.unit_price, ev.timestamp_ms});
  }
  return rows;
}

int Main() {
  const int k = absl::GetFlag(FLAGS_k);
  uint64_t skipped = 0;
  auto channel = MakeChannel(absl::GetFlag(FLAGS_target), ClientAuthFromFlags());
  if (!WaitForReady(*channel, std::chrono::seconds(10))) {
    std::cerr << "cannot reach " << absl::GetFlag(FLAGS_target) << "\n";
    return 1;
  }
  const bool demo = absl::GetFlag(FLAGS_data) == "demo";
  if (demo && absl::GetFlag(FLAGS_validation)) {
    std::cerr << "--validation: not with --data=demo, whose replay publishes every order\n";
    return 2;
  }
  const std::vector<Row> rows =
      demo ? ReplayDemo(*channel)
           : ReadTransactions(absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_format), &skipped);
  std::vector<v1::Event> events = EventsOf(rows);
  if (absl::GetFlag(FLAGS_validation)) {
    const std::map<std::string, std::string> test = LastOrders(events);
    std::erase_if(events, [&](const v1::Event& e) { return HeldOut(test, e); });
  }

  const std::map<std::string, std::string> last = LastOrders(events);
  std::vector<v1::Event> train;
  std::map<std::string, std::set<std::string>> held, bought;
  for (const v1::Event& e : events) {
    if (HeldOut(last, e)) {
      if (e.type() == v1::PURCHASE) held[e.user_id()].insert(e.item_id());
      continue;
    }
    if (e.type() == v1::PURCHASE) bought[e.user_id()].insert(e.item_id());
    train.push_back(e);
  }
  const std::vector<v1::Item> catalogue = CatalogueOf(rows);
  std::printf(
      "read %zu rows (%lu unreadable): %zu items, %zu events; training on %zu, "
      "holding out the last order of %zu customers\n",
      rows.size(), skipped, catalogue.size(), events.size(), train.size(), held.size());

  if (!demo) {  // the demo replay has published its events already
    CheckOrExit(UpsertItems(*channel, catalogue, 5000).status(), "UpsertItems");
    Publish(*channel, train);
  }
  CheckOrExit(WaitApplied(*channel), "ModelStatus");
  CheckOrExit(RetrainRecommendations(*channel), "Retrain");

  auto rec = v1::Recommender::NewStub(channel);
  const auto ask = [&](v1::RecommendRequest req) {
    v1::RecommendResponse resp;
    CheckOrExit(rec->Recommend(Deadline(30).get(), req, &resp), "Recommend");
    return resp;
  };
  Metric personal_all, popular_all, personal_sampled, popular_sampled;
  int users = 0;
  uint64_t rng = 42;
  for (const auto& [user, items] : held) {
    std::set<std::string> targets;
    for (const std::string& item : items) {
      if (!bought[user].contains(item)) targets.insert(item);
    }
    if (targets.empty()) continue;
    if (absl::GetFlag(FLAGS_max_users) > 0 && users == absl::GetFlag(FLAGS_max_users)) break;
    ++users;
    v1::RecommendRequest all;
    all.set_user_id(user);
    all.set_count(k);
    all.mutable_filter()->set_exclude_purchased(true);
    personal_all.Add(ask(all), targets, k);
    v1::RecommendRequest stranger = all;
    stranger.set_user_id(kStranger);
    for (const std::string& item : bought[user]) {
      if (stranger.filter().exclude_item_ids_size() == kMaxExcluded) break;
      stranger.mutable_filter()->add_exclude_item_ids(item);
    }
    popular_all.Add(ask(stranger), targets, k);

    // One held-out item among sampled items the customer never bought.
    v1::RecommendRequest sampled;
    sampled.set_user_id(user);
    sampled.set_count(k);
    const std::string& target = *targets.begin();
    sampled.add_candidate_item_ids(target);
    std::set<std::string> chosen = {target};
    while (sampled.candidate_item_ids_size() <= absl::GetFlag(FLAGS_negatives) &&
           chosen.size() < catalogue.size()) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      const std::string& item = catalogue[(rng >> 33) % catalogue.size()].item_id();
      if (!chosen.insert(item).second || items.contains(item) || bought[user].contains(item)) {
        continue;  // tried before, or bought
      }
      sampled.add_candidate_item_ids(item);
    }
    personal_sampled.Add(ask(sampled), {target}, k);
    sampled.set_user_id(kStranger);
    popular_sampled.Add(ask(sampled), {target}, k);
  }
  std::printf("\n%d customers evaluated (held-out items they had not bought before)\n", users);
  std::printf("%-12s %10s %10s %14s %14s\n", "model", absl::StrCat("HR@", k).c_str(),
              absl::StrCat("NDCG@", k).c_str(),
              absl::StrCat("HR@", k, " 1+", absl::GetFlag(FLAGS_negatives)).c_str(),
              absl::StrCat("NDCG@", k, " 1+", absl::GetFlag(FLAGS_negatives)).c_str());
  const auto row = [&](const char* name, const Metric& a, const Metric& s) {
    std::printf("%-12s %10.4f %10.4f %14.4f %14.4f\n", name, a.hits / users, a.ndcg / users,
                s.hits / users, s.ndcg / users);
  };
  row("iALS", personal_all, personal_sampled);
  row("popularity", popular_all, popular_sampled);
  return 0;
}

}  // namespace
}  // namespace mercato::clients

int main(int argc, char** argv) {
  mercato::core::ParseCommandLine(argc, argv,
                                  "hold-out ranking quality of a Mercato server, "
                                  "through its public API");
  return mercato::clients::Main();
}
