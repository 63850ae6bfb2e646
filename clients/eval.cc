// mercato-eval: offline evaluation of the recommender through the public API
// only. Replays a transactions file into a running server with each
// customer's last order held out, retrains, then asks Recommend:
//   - over all items, already-purchased items excluded (HR@K, NDCG@K);
//   - over a candidate list of one held-out item and N sampled negatives
//     (candidate_item_ids).
// The personal model answers for the customer; popularity answers for a user
// the server has never seen (with the customer's purchases excluded).
//
//   mercato-eval --target=127.0.0.1:50051 \
//       --data=../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "clients/transactions.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "mercato-server address (an empty shop)");
ABSL_FLAG(std::string, data, "../shared/data/online_retail_ii/online_retail_II_2009-2010.csv.gz",
          "transactions file");
ABSL_FLAG(std::string, format, "online-retail",
          "online-retail, or generic: user,item,timestamp[,price,quantity,order]");
ABSL_FLAG(int, k, 10, "cut-off K of HR@K and NDCG@K");
ABSL_FLAG(int, negatives, 100, "sampled negatives per candidate list");
ABSL_FLAG(int, max_users, 0, "evaluate at most this many customers (0 = all)");

namespace mercato::clients {
namespace {

constexpr char kStranger[] = "mercato-eval-stranger";
constexpr int kMaxExcluded = 1000;

void Check(const grpc::Status& s, const char* what) {
  if (s.ok()) return;
  std::cerr << what << ": " << s.error_message() << "\n";
  std::exit(1);
}

std::unique_ptr<grpc::ClientContext> Deadline() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

uint64_t Retrains(v1::Admin::Stub& admin) {
  v1::ModelStatusResponse st;
  Check(admin.ModelStatus(Deadline().get(), v1::ModelStatusRequest(), &st), "ModelStatus");
  for (const auto& m : st.models()) {
    if (m.name() == "recommend" && m.counts().contains("retrains")) return m.counts().at("retrains");
  }
  return 0;
}

// Sums of HR@K and NDCG@K over the evaluated customers.
struct Metric {
  double hits = 0, ndcg = 0;
  void Add(const v1::RecommendResponse& r, const std::set<std::string>& targets, int k) {
    double dcg = 0, ideal = 0;
    for (int i = 0; i < r.items_size() && i < k; ++i) {
      if (targets.contains(r.items(i).item_id())) dcg += 1 / std::log2(i + 2.0);
    }
    for (int i = 0; i < k && i < static_cast<int>(targets.size()); ++i) ideal += 1 / std::log2(i + 2.0);
    hits += dcg > 0;
    ndcg += dcg / ideal;
  }
};

int Main() {
  const int k = absl::GetFlag(FLAGS_k);
  uint64_t skipped = 0;
  const std::vector<Row> rows =
      ReadTransactions(absl::GetFlag(FLAGS_data), absl::GetFlag(FLAGS_format), &skipped);
  const std::vector<v1::Event> events = EventsOf(rows);

  // Each customer's last order (latest timestamp, then largest id) is held out.
  std::map<std::string, std::pair<int64_t, std::string>> last;
  std::map<std::string, std::set<std::string>> orders;
  for (const v1::Event& e : events) {
    if (e.type() != v1::PURCHASE || e.user_id().rfind("guest-", 0) == 0) continue;
    orders[e.user_id()].insert(e.order_id());
    last[e.user_id()] = std::max(last[e.user_id()], {e.timestamp_ms(), e.order_id()});
  }
  std::vector<v1::Event> train;
  std::map<std::string, std::set<std::string>> held, bought;
  for (const v1::Event& e : events) {
    auto it = last.find(e.user_id());
    const bool evaluated = it != last.end() && orders[e.user_id()].size() >= 2;
    if (evaluated && e.order_id() == it->second.second) {
      if (e.type() == v1::PURCHASE) held[e.user_id()].insert(e.item_id());
      continue;
    }
    if (e.type() == v1::PURCHASE) bought[e.user_id()].insert(e.item_id());
    train.push_back(e);
  }
  const std::vector<v1::Item> catalogue = CatalogueOf(rows);
  std::printf("read %zu rows (%lu unreadable): %zu items, %zu events; training on %zu, "
              "holding out the last order of %zu customers\n",
              rows.size(), skipped, catalogue.size(), events.size(), train.size(), held.size());

  auto channel = MakeChannel(absl::GetFlag(FLAGS_target));
  if (!WaitForReady(*channel, std::chrono::seconds(10))) {
    std::cerr << "cannot reach " << absl::GetFlag(FLAGS_target) << "\n";
    return 1;
  }
  auto admin = v1::Admin::NewStub(channel);
  const uint64_t retrains = Retrains(*admin);
  if (absl::Status s = UpsertItems(*channel, catalogue, 5000).status(); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  v1::PublishSummary summary;
  if (absl::Status s = PublishEvents(*channel, train, 5000, &summary); !s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  for (;;) {
    v1::ModelStatusResponse st;
    Check(admin->ModelStatus(Deadline().get(), v1::ModelStatusRequest(), &st), "ModelStatus");
    if (st.lag_events() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  v1::RetrainRequest retrain;
  retrain.set_model("recommend");
  v1::RetrainResponse started;
  Check(admin->Retrain(Deadline().get(), retrain, &started), "Retrain");
  while (Retrains(*admin) == retrains) std::this_thread::sleep_for(std::chrono::milliseconds(100));

  auto rec = v1::Recommender::NewStub(channel);
  const auto ask = [&](v1::RecommendRequest req) {
    v1::RecommendResponse resp;
    Check(rec->Recommend(Deadline().get(), req, &resp), "Recommend");
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
      if (items.contains(item) || bought[user].contains(item) || !chosen.insert(item).second) continue;
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
  absl::ParseCommandLine(argc, argv);
  return mercato::clients::Main();
}
