// Replicas sharing one Redis stream: real redis-server and mercato-server
// processes, SIGKILLed and restarted. They converge bit for bit (equal
// digests at equal sequences, equal logs), read their writes, lose nothing
// acknowledged when Redis or a replica dies, start from backups, trim only
// what no replica needs, and a replica that cannot serve is routed around.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "core/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/experiments.grpc.pb.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "testing/demo_shop.h"
#include "tests/integration/redis_process.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

constexpr char kStream[] = "shop";

std::vector<std::string> ReplicaFlags(const RedisProcess& redis,
                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> flags = {"--event_log=" + redis.Url(kStream), "--sync_writes=false"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

// A customer of `shop` who bought something: one with a segment.
std::string Purchaser(const core::DemoShop& shop) {
  for (const core::Event& e : shop.events) {
    if (e.type == core::EventType::kPurchase) return e.user_id;
  }
  return "";
}

core::DemoShop SmallShop() {
  core::DemoShopOptions options;
  options.users = 200;
  options.items = 50;
  options.days = 30;
  return core::GenerateDemoShop(options);
}

v1::Event View(const std::string& id, const std::string& user, const std::string& item) {
  v1::Event e;
  e.set_event_id(id);
  e.set_type(v1::VIEW);
  e.set_user_id(user);
  e.set_item_id(item);
  e.set_timestamp_ms(1706745600000);  // 2024-02-01, after the small shop's days
  return e;
}

v1::Event Purchase(const std::string& id, const std::string& user, const std::string& item) {
  v1::Event e = View(id, user, item);
  e.set_type(v1::PURCHASE);
  e.set_quantity(1);
  e.set_unit_price(10);
  return e;
}

grpc::Status Publish(grpc::Channel& channel, const std::vector<v1::Event>& events,
                     v1::PublishSummary* summary) {
  v1::EventBatch batch;
  for (const v1::Event& e : events) *batch.add_events() = e;
  return v1::Ingest::NewStub(channel.shared_from_this())
      ->PublishBatch(Ctx(5).get(), batch, summary);
}

// Waits until every replica has copied and applied the same whole log and
// its settled models hold all of it, with no erasure pending; returns their
// statuses.
std::vector<v1::ModelStatusResponse> Converged(const std::vector<ServerProcess*>& replicas,
                                               int seconds = 60) {
  std::vector<v1::ModelStatusResponse> st(replicas.size());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    bool same = true;
    for (size_t i = 0; i < replicas.size(); ++i) {
      st[i] = Status(*v1::Admin::NewStub(replicas[i]->channel()));
      const uint64_t head = st[i].shared_log_sequence();
      same = same && head > 0 && head == st[0].shared_log_sequence() &&
             st[i].log_sequence() == head && st[i].applied_sequence() == head &&
             st[i].erasures_pending() == 0;
      for (const v1::ModelInfo& m : st[i].models()) same = same && m.digest_sequence() == head;
    }
    if (same) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "the replicas did not converge within " << seconds << " s";
  return st;
}

// Waits until `replica`'s settled models hold `sequence`.
void WaitSettled(ServerProcess& replica, uint64_t sequence) {
  auto admin = v1::Admin::NewStub(replica.channel());
  for (int i = 0; i < 1000; ++i) {
    const v1::ModelStatusResponse st = Status(*admin);
    bool settled = true;
    for (const v1::ModelInfo& m : st.models()) settled = settled && m.digest_sequence() >= sequence;
    if (settled) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "sequence " << sequence << " never settled";
}

std::map<std::string, std::string> Digests(const v1::ModelStatusResponse& st) {
  std::map<std::string, std::string> out;
  for (const v1::ModelInfo& m : st.models()) out[m.name()] = m.digest();
  return out;
}

std::vector<std::string> LogBytes(ServerProcess& replica) {
  std::vector<std::string> out;
  for (const v1::LoggedEvent& e : ReadWholeLog(*v1::Admin::NewStub(replica.channel()))) {
    out.push_back(e.SerializeAsString());
  }
  return out;
}

grpc::Status SegmentOf(grpc::Channel& channel, const std::string& user, uint64_t min_sequence = 0,
                       int deadline_ms = 5000) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  if (min_sequence > 0) ctx.AddMetadata("mercato-min-sequence", absl::StrCat(min_sequence));
  v1::SegmentRequest req;
  req.set_user_id(user);
  v1::SegmentResponse resp;
  return v1::Segmenter::NewStub(channel.shared_from_this())->Segment(&ctx, req, &resp);
}

// The sequence of the stream's first entry; 0 when empty.
uint64_t FirstEntry(const RedisProcess& redis) {
  const std::string out = redis.Cli(absl::StrCat("XRANGE ", kStream, " - + COUNT 1"));
  uint64_t seq = 0;
  if (out.size() > 2 && absl::SimpleAtoi(out.substr(2, out.find('\n') - 2), &seq)) return seq;
  return 0;
}

TEST(ReplicaTest, WritesToEitherReplicaConvergeBitForBit) {
  TempDir dir;
  RedisProcess redis(dir.path());
  ServerProcess a(dir.path() + "/a", ReplicaFlags(redis));
  ServerProcess b(dir.path() + "/b", ReplicaFlags(redis));
  core::DemoShopOptions options;
  options.users = 700;
  options.items = 200;
  const core::DemoShop shop = core::GenerateDemoShop(options);
  ASSERT_GE(shop.events.size(), 100000u);
  std::vector<v1::Item> items;
  for (const core::DemoItem& it : shop.items) items.push_back(clients::ToProto(it.item));
  ASSERT_TRUE(clients::UpsertItems(*b.channel(), items, 1000).ok());
  // Batches of 1,000 through A and B in turn; every fifth batch again
  // through the other replica, where each of its events is a duplicate.
  uint64_t accepted = 0, duplicates = 0;
  std::vector<v1::Event> batch;
  for (size_t at = 0, n = 0; at < shop.events.size(); at += 1000, ++n) {
    batch.clear();
    for (size_t i = at; i < std::min(at + 1000, shop.events.size()); ++i) {
      batch.push_back(clients::ToProto(shop.events[i]));
    }
    ServerProcess& via = n % 2 == 0 ? a : b;
    ServerProcess& other = n % 2 == 0 ? b : a;
    v1::PublishSummary summary;
    ASSERT_TRUE(Publish(*via.channel(), batch, &summary).ok());
    accepted += summary.accepted();
    if (n % 5 == 0) {
      ASSERT_TRUE(Publish(*other.channel(), batch, &summary).ok());
      EXPECT_EQ(summary.duplicates(), batch.size());
      duplicates += summary.duplicates();
    }
  }
  EXPECT_EQ(accepted, shop.events.size());
  EXPECT_GT(duplicates, 0u);

  // Every other kind of write, through both replicas.
  v1::UpsertItemsRequest upsert;
  v1::Item* item = upsert.add_items();
  item->set_item_id("via-b");
  item->set_price(12.5);
  item->add_category_path("books");
  (*item->mutable_attributes())["brand"] = "north";
  v1::UpsertItemsResponse upserted;
  ASSERT_TRUE(v1::Catalog::NewStub(b.channel())->UpsertItems(Ctx().get(), upsert, &upserted).ok());
  v1::DeleteUserRequest del;
  del.set_user_id("user5");
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(v1::Admin::NewStub(a.channel())->DeleteUser(Ctx().get(), del, &deleted).ok());
  v1::RetrainResponse retrain;
  ASSERT_TRUE(
      v1::Admin::NewStub(b.channel())->Retrain(Ctx().get(), v1::RetrainRequest(), &retrain).ok());

  // Recommendations served by both, one followed by a click sent to the
  // other: every replica counts every replica's answers.
  v1::RecommendRequest recommend;
  recommend.set_user_id("user7");
  recommend.set_count(3);
  v1::RecommendResponse recommended[2];
  ASSERT_TRUE(v1::Recommender::NewStub(a.channel())
                  ->Recommend(Ctx().get(), recommend, &recommended[0])
                  .ok());
  ASSERT_TRUE(v1::Recommender::NewStub(b.channel())
                  ->Recommend(Ctx().get(), recommend, &recommended[1])
                  .ok());
  v1::Event click;
  click.set_event_id("click-after-a");
  click.set_type(v1::CLICK);
  click.set_user_id("user7");
  click.set_item_id(recommended[0].items(0).item_id());
  click.set_timestamp_ms(core::Clock::Real()->NowMs());
  click.set_recommendation_id(recommended[0].recommendation_id());
  v1::PublishSummary clicked;
  ASSERT_TRUE(Publish(*b.channel(), {click}, &clicked).ok());
  const auto answers = [](ServerProcess& replica) {
    v1::GetExperimentResultsResponse r;
    EXPECT_TRUE(v1::Experiments::NewStub(replica.channel())
                    ->GetResults(Ctx().get(), v1::GetExperimentResultsRequest(), &r)
                    .ok());
    return r.arms_size() == 1 ? r.arms(0).answers() + 10 * r.arms(0).clicks() : 0;
  };
  for (int i = 0; i < 600 && (answers(a) != 12 || answers(b) != 12); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(answers(a), 12u) << "two answers and one click";

  const std::vector<v1::ModelStatusResponse> st = Converged({&a, &b}, 120);
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(Digests(st[0]), Digests(st[1]));
  EXPECT_EQ(Digests(st[0]).size(), 6u);
  const std::vector<std::string> log = LogBytes(a);
  EXPECT_EQ(log, LogBytes(b));
  // Each event once, duplicates applied never.
  std::set<std::string> ids;
  size_t shop_events = 0;
  for (const v1::LoggedEvent& e : ReadWholeLog(*v1::Admin::NewStub(a.channel()))) {
    if (e.event().event_id().empty() || e.event().type() == v1::ITEM_UPDATE) continue;
    EXPECT_TRUE(ids.insert(e.event().event_id()).second) << e.event().event_id();
    shop_events += e.event().event_id().rfind("fit-done/", 0) != 0 &&
                   e.event().event_id().rfind("retrain/", 0) != 0 &&
                   e.event().event_id().rfind("erase-keys/", 0) != 0 &&
                   e.event().event_id().rfind("served/", 0) != 0 &&
                   e.event().event_id() != click.event_id();
  }
  // (The erased customer's events keep no id.)
  EXPECT_EQ(shop_events, std::count_if(shop.events.begin(), shop.events.end(),
                                       [](const core::Event& e) { return e.user_id != "user5"; }));
  // The catalogue row written through B is in A's catalogue.
  v1::GetItemRequest get;
  get.set_item_id("via-b");
  v1::Item got;
  ASSERT_TRUE(v1::Catalog::NewStub(a.channel())->GetItem(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.attributes().at("brand"), "north");
}

TEST(ReplicaTest, AReadWaitsForItsWriteOrAnswersUnavailable) {
  TempDir dir;
  RedisProcess redis(dir.path());
  ServerProcess a(dir.path() + "/a", ReplicaFlags(redis));
  ServerProcess b(dir.path() + "/b", ReplicaFlags(redis));
  v1::PublishSummary loaded;
  const core::DemoShop shop = SmallShop();
  ASSERT_TRUE(clients::LoadDemoShop(*a.channel(), shop, 1000, &loaded).ok());
  Converged({&a, &b});
  // A purchase through A is excluded from B's next recommendations at once.
  auto recommender = v1::Recommender::NewStub(b.channel());
  const std::string shopper = Purchaser(shop);
  for (int i = 0; i < 5; ++i) {
    v1::RecommendRequest req;
    req.set_user_id(shopper);
    req.set_count(5);
    req.mutable_filter()->set_exclude_purchased(true);
    v1::RecommendResponse before;
    ASSERT_TRUE(recommender->Recommend(Ctx().get(), req, &before).ok());
    ASSERT_GT(before.items_size(), 0);
    const std::string bought = before.items(0).item_id();
    v1::PublishSummary summary;
    ASSERT_TRUE(
        Publish(*a.channel(), {Purchase(absl::StrCat("ryw-", i), shopper, bought)}, &summary).ok());
    grpc::ClientContext ctx;
    ctx.AddMetadata("mercato-min-sequence", absl::StrCat(summary.last_sequence()));
    v1::RecommendResponse after;
    ASSERT_TRUE(recommender->Recommend(&ctx, req, &after).ok());
    for (const v1::ScoredItem& item : after.items()) EXPECT_NE(item.item_id(), bought) << i;
  }
  for (int i = 0; i < 5; ++i) {
    const std::string user = absl::StrCat("new-customer-", i);
    v1::PublishSummary summary;
    ASSERT_TRUE(Publish(*a.channel(), {Purchase(user + "-order", user, "item1")}, &summary).ok());
    // Through the other replica, at once: it waits until it has the write.
    const grpc::Status s = SegmentOf(*b.channel(), user, summary.last_sequence());
    EXPECT_TRUE(s.ok()) << user << ": " << s.error_message();
  }
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status never =
      SegmentOf(*b.channel(), "user1", loaded.last_sequence() + 1000000, 300);
  EXPECT_EQ(never.error_code(), grpc::StatusCode::UNAVAILABLE) << never.error_message();
  EXPECT_NE(never.error_message().find("mercato-min-sequence"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  grpc::ClientContext bad;
  bad.AddMetadata("mercato-min-sequence", "soon");
  v1::SegmentRequest req;
  req.set_user_id("user1");
  v1::SegmentResponse resp;
  const grpc::Status refused = v1::Segmenter::NewStub(b.channel())->Segment(&bad, req, &resp);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("mercato-min-sequence"), std::string::npos);
}

// Publishes batches of 20 new purchases through `via` from another thread
// until stopped, keeping the ids of those acknowledged.
class Writer {
 public:
  explicit Writer(ServerProcess* via) : via_(via), thread_([this] { Run(); }) {}
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::set<std::string>& acknowledged() const { return acknowledged_; }
  int refused() const { return refused_; }
  int written() const { return written_.load(); }

 private:
  void Run() {
    for (int n = 0; !stop_; ++n) {
      std::vector<v1::Event> events;
      for (int i = 0; i < 20; ++i) {
        const std::string id = absl::StrCat("w-", n, "-", i);
        events.push_back(Purchase(id, absl::StrCat("user", i), absl::StrCat("item", i)));
      }
      v1::PublishSummary summary;
      const grpc::Status s = Publish(*via_->channel(), events, &summary);
      if (!s.ok()) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
        ++refused_;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      for (const v1::Event& e : events) acknowledged_.insert(e.event_id());
      ++written_;
    }
  }

  ServerProcess* via_;
  std::atomic<bool> stop_{false};
  std::set<std::string> acknowledged_;
  int refused_ = 0;
  std::atomic<int> written_{0};
  std::thread thread_;
};

// Calls Segment of `customer` on each replica from another thread until
// stopped, counting failures.
class Reader {
 public:
  Reader(std::vector<ServerProcess*> replicas, std::string customer)
      : replicas_(std::move(replicas)),
        customer_(std::move(customer)),
        thread_([this] { Run(); }) {}
  ~Reader() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int calls() const { return calls_; }
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  void Run() {
    while (!stop_) {
      for (ServerProcess* r : replicas_) {
        const grpc::Status s = SegmentOf(*r->channel(), customer_);
        ++calls_;
        if (!s.ok()) failures_.push_back(s.error_message());
      }
    }
  }

  const std::vector<ServerProcess*> replicas_;
  const std::string customer_;
  std::atomic<bool> stop_{false};
  int calls_ = 0;
  std::vector<std::string> failures_;
  std::thread thread_;
};

void WaitWritten(const Writer& w, int batches) {
  const int until = w.written() + batches;
  for (int i = 0; i < 1000 && w.written() < until; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(w.written(), until);
}

TEST(ReplicaTest, NothingAcknowledgedIsLostWhenRedisOrAReplicaIsKilled) {
  TempDir dir;
  RedisProcess redis(dir.path());
  ServerProcess a(dir.path() + "/a", ReplicaFlags(redis));
  auto b = std::make_unique<ServerProcess>(dir.path() + "/b", ReplicaFlags(redis));
  v1::PublishSummary loaded;
  const core::DemoShop shop = SmallShop();
  const std::string customer = Purchaser(shop);
  ASSERT_TRUE(clients::LoadDemoShop(*a.channel(), shop, 1000, &loaded).ok());
  Converged({&a, b.get()});

  // Redis killed during ingest and restarted on its folder: writes in the
  // outage are refused, reads never fail.
  auto writer = std::make_unique<Writer>(&a);
  Reader reader({&a, b.get()}, customer);
  WaitWritten(*writer, 10);
  redis.Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  redis.Start();
  WaitWritten(*writer, 10);
  reader.Stop();
  EXPECT_GT(writer->refused(), 0) << "writes during the outage are refused";
  EXPECT_GT(reader.calls(), 20);
  EXPECT_EQ(reader.failures(), std::vector<std::string>{});

  // A replica killed during ingest catches up from its position.
  b->Kill();
  WaitWritten(*writer, 10);
  b = std::make_unique<ServerProcess>(dir.path() + "/b", ReplicaFlags(redis));
  WaitWritten(*writer, 10);
  writer->Stop();
  const std::vector<v1::ModelStatusResponse> st = Converged({&a, b.get()});
  EXPECT_EQ(Digests(st[0]), Digests(st[1]));
  const std::set<std::string>& acknowledged = writer->acknowledged();
  for (ServerProcess* replica : {&a, b.get()}) {
    std::multiset<std::string> logged;
    for (const v1::LoggedEvent& e : ReadWholeLog(*v1::Admin::NewStub(replica->channel()))) {
      if (e.event().event_id().rfind("w-", 0) == 0) logged.insert(e.event().event_id());
    }
    // Each acknowledged event exactly once; a refused one at most once (its
    // script may have run before the connection broke).
    for (const std::string& id : acknowledged) EXPECT_EQ(logged.count(id), 1u) << id;
    for (const std::string& id : logged) EXPECT_EQ(logged.count(id), 1u) << id;
  }
  EXPECT_EQ(redis.Cli(absl::StrCat("XLEN ", kStream)), absl::StrCat(st[0].shared_log_sequence()));
}

TEST(ReplicaTest, ABalancingClientLosesOnlyTheCallsInFlightWhenAReplicaDies) {
  TempDir dir;
  RedisProcess redis(dir.path());
  auto a = std::make_unique<ServerProcess>(dir.path() + "/a", ReplicaFlags(redis));
  ServerProcess b(dir.path() + "/b", ReplicaFlags(redis));
  v1::PublishSummary loaded;
  const core::DemoShop shop = SmallShop();
  ASSERT_TRUE(clients::LoadDemoShop(*a->channel(), shop, 1000, &loaded).ok());
  Converged({a.get(), &b});
  auto balanced = clients::MakeChannel(a->target() + "," + b.target());
  auto recommender = v1::Recommender::NewStub(balanced);
  auto fraud = v1::Fraud::NewStub(balanced);
  std::vector<std::string> failures;
  for (int i = 0; i < 400; ++i) {
    if (i == 200) a->Kill();
    v1::RecommendRequest req;
    req.set_user_id(Purchaser(shop));
    req.set_count(5);
    v1::RecommendResponse rec;
    if (grpc::Status s = recommender->Recommend(Ctx(5).get(), req, &rec); !s.ok()) {
      failures.push_back(s.error_message());
    }
    v1::Order order;
    order.set_order_id(absl::StrCat("failover-", i));
    order.set_user_id("user3");
    order.set_amount(25);
    order.set_currency("EUR");
    v1::ScoreResponse scored;
    if (grpc::Status s = fraud->Score(Ctx(5).get(), order, &scored); !s.ok()) {
      failures.push_back(s.error_message());
    }
  }
  // One call at a time: at most the one in flight when A died.
  EXPECT_LE(failures.size(), 1u) << failures.front();
}

TEST(ReplicaTest, TrimmingKeepsWhatReplicasNeedAndBackupsStartNewOnes) {
  TempDir dir;
  RedisProcess redis(dir.path());
  const std::vector<std::string> flags =
      ReplicaFlags(redis, {"--redis_retain_events=0", "--redis_position_interval_s=1"});
  ServerProcess a(dir.path() + "/a", flags);
  auto b = std::make_unique<ServerProcess>(dir.path() + "/b", flags);
  v1::PublishSummary loaded;
  const core::DemoShop shop = SmallShop();
  const std::string customer = Purchaser(shop);
  ASSERT_TRUE(clients::LoadDemoShop(*a.channel(), shop, 1000, &loaded).ok());
  Converged({&a, b.get()});
  const auto checkpoint = [](ServerProcess& replica) {
    v1::CheckpointResponse cp;
    EXPECT_TRUE(v1::Admin::NewStub(replica.channel())
                    ->Checkpoint(Ctx().get(), v1::CheckpointRequest(), &cp)
                    .ok());
    return cp.sequence();
  };
  const uint64_t b_checkpoint = checkpoint(*b);
  // Long enough for B to record that checkpoint as its position.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  b->Kill();
  // Only A goes on; B's recorded checkpoint holds the trimming back.
  std::vector<v1::Event> more;
  for (int i = 0; i < 300; ++i) more.push_back(View(absl::StrCat("more-", i), "user3", "item2"));
  v1::PublishSummary summary;
  ASSERT_TRUE(Publish(*a.channel(), more, &summary).ok());
  WaitSettled(a, summary.last_sequence());
  const uint64_t a_checkpoint = checkpoint(a);
  ASSERT_GT(a_checkpoint, b_checkpoint);
  uint64_t first = FirstEntry(redis);
  for (int i = 0; i < 100 && first <= 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    first = FirstEntry(redis);
  }
  // A goes on recording; the trimming stays where B's checkpoint holds it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  first = FirstEntry(redis);
  EXPECT_GT(first, 1u) << "trimmed up to the oldest checkpoint";
  EXPECT_LE(first, b_checkpoint + 1) << "nothing B's checkpoint needs is trimmed";
  b = std::make_unique<ServerProcess>(dir.path() + "/b", flags);
  Converged({&a, b.get()});

  // A backup of A starts a new replica, which reads the stream from there.
  v1::BackupRequest breq;
  breq.set_name("for-c");
  v1::BackupResponse bresp;
  ASSERT_TRUE(v1::Admin::NewStub(a.channel())->Backup(Ctx().get(), breq, &bresp).ok());
  const std::string backup = bresp.folder();
  EXPECT_EQ(backup, dir.path() + "/a/backups/for-c");
  EXPECT_EQ(bresp.log_sequence(), summary.last_sequence());
  ASSERT_TRUE(Publish(*a.channel(), {View("after-backup", "user4", "item3")}, &summary).ok());
  ServerProcess c(dir.path() + "/c", [&] {
    std::vector<std::string> f = flags;
    f.push_back("--restore_from=" + backup);
    return f;
  }());
  const std::vector<v1::ModelStatusResponse> st = Converged({&a, b.get(), &c});
  EXPECT_EQ(Digests(st[0]), Digests(st[2]));
  EXPECT_EQ(LogBytes(a), LogBytes(c));

  // Once B and C have checkpointed too, the stream is trimmed past the
  // start: an empty replica cannot be made from it, says why, and is not
  // served. A client balancing over it and A gets A's answers only.
  checkpoint(a);
  checkpoint(*b);
  checkpoint(c);
  for (int i = 0; i < 100 && FirstEntry(redis) <= b_checkpoint + 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ServerProcess d(dir.path() + "/d", ReplicaFlags(redis, {"--max_serving_lag_events=10"}), {},
                  /*wait_serving=*/false);
  v1::ModelStatusResponse dst;
  for (int i = 0; i < 100 && dst.shared_log_error().find("trimmed") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    dst = Status(*v1::Admin::NewStub(d.channel()));
  }
  EXPECT_NE(dst.shared_log_error().find("trimmed"), std::string::npos) << dst.shared_log_error();
  EXPECT_FALSE(dst.serving());
  auto balanced = clients::MakeChannel(a.target() + "," + d.target());
  for (int i = 0; i < 20; ++i) {
    const grpc::Status s = SegmentOf(*balanced, customer);
    EXPECT_TRUE(s.ok()) << "call " << i << ": " << s.error_message();
  }
}

TEST(ReplicaTest, APasswordedRedisAndWritesThatWaitForItsReplicas) {
  TempDir dir, replica_dir;
  RedisProcess redis(dir.path(), {"--requirepass", "s3cret", "--repl-diskless-sync-delay", "0"});
  const std::string password_file = dir.path() + "/redis-password";
  std::ofstream(password_file) << "s3cret\n";
  ServerProcess a(dir.path() + "/a", ReplicaFlags(redis, {"--redis_password_file=" + password_file,
                                                          "--redis_wait_replicas=1"}));
  v1::PublishSummary summary;
  // No Redis replica has it: refused, not acknowledged.
  const grpc::Status alone = Publish(*a.channel(), {View("w-1", "user1", "item1")}, &summary);
  EXPECT_EQ(alone.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(alone.error_message().find("--redis_wait_replicas"), std::string::npos)
      << alone.error_message();
  RedisProcess follower(
      replica_dir.path(),
      {"--replicaof", "127.0.0.1", std::to_string(redis.port()), "--masterauth", "s3cret"});
  for (int i = 0;
       i < 200 && redis.Cli("INFO replication").find("state=online") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The retry of the same event is safe, and now acknowledged.
  const grpc::Status s = Publish(*a.channel(), {View("w-1", "user1", "item1")}, &summary);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(Publish(*a.channel(), {View("w-2", "user1", "item1")}, &summary).ok());
  EXPECT_EQ(summary.accepted(), 1u);
  EXPECT_EQ(follower.Cli(absl::StrCat("XLEN ", kStream)), "2");
  const v1::ModelStatusResponse st = Status(*v1::Admin::NewStub(a.channel()));
  EXPECT_TRUE(st.shared_log_connected());
}

TEST(ReplicaTest, RefusesToStartWithABadSharedLogNamingTheFlag) {
  TempDir dir;
  for (const auto& [flag, named] : std::vector<std::pair<std::string, std::string>>{
           {"--event_log=redis://127.0.0.1/shop", "--event_log"},
           {"--event_log=redis://127.0.0.1:1/s --redis_dedup_window_s=0", "--redis_dedup_window_s"},
           {"--event_log=redis://127.0.0.1:1/s --redis_password_file=" + dir.path() + "/none",
            "--redis_password_file"}}) {
    std::string err;
    EXPECT_EQ(RunServer("--listen=127.0.0.1:0 " + flag, &err), 2) << flag;
    EXPECT_NE(err.find(named + ": "), std::string::npos) << flag << ": " << err;
  }
}

}  // namespace
}  // namespace mercato::testing
