// Replicas sharing one Redis stream: real redis-server and mercato-server
// processes, SIGKILLed and restarted. They converge bit for bit (equal
// digests at equal sequences, equal logs), read their writes, lose nothing
// acknowledged when Redis or a replica dies, start from backups, trim only
// what no replica needs, and a replica that cannot serve is routed around.
#include <gtest/gtest.h>

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
#include "grpc/health/v1/health.grpc.pb.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
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
  v1::PublishSummary loaded;
  ASSERT_TRUE(clients::LoadDemoShop(*a.channel(), SmallShop(), 1000, &loaded).ok());

  // Every kind of write, through both replicas.
  v1::UpsertItemsRequest upsert;
  v1::Item* item = upsert.add_items();
  item->set_item_id("via-b");
  item->set_price(12.5);
  item->add_category_path("books");
  (*item->mutable_attributes())["brand"] = "north";
  v1::UpsertItemsResponse upserted;
  ASSERT_TRUE(v1::Catalog::NewStub(b.channel())->UpsertItems(Ctx().get(), upsert, &upserted).ok());
  std::vector<v1::Event> views;
  for (int i = 0; i < 50; ++i) views.push_back(View(absl::StrCat("b-", i), "b-user", "via-b"));
  v1::PublishSummary summary;
  ASSERT_TRUE(Publish(*b.channel(), views, &summary).ok());
  EXPECT_EQ(summary.accepted(), 50u);
  // Idempotency is global: the same id through the other replica is a
  // duplicate.
  v1::PublishSummary again;
  ASSERT_TRUE(Publish(*a.channel(), {views[7]}, &again).ok());
  EXPECT_EQ(again.duplicates(), 1u);
  EXPECT_EQ(again.accepted(), 0u);
  v1::DeleteUserRequest del;
  del.set_user_id("user5");
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(v1::Admin::NewStub(a.channel())->DeleteUser(Ctx().get(), del, &deleted).ok());
  v1::RetrainResponse retrain;
  ASSERT_TRUE(
      v1::Admin::NewStub(b.channel())->Retrain(Ctx().get(), v1::RetrainRequest(), &retrain).ok());

  const std::vector<v1::ModelStatusResponse> st = Converged({&a, &b});
  ASSERT_EQ(st.size(), 2u);
  EXPECT_GT(st[0].shared_log_sequence(), loaded.last_sequence());
  EXPECT_EQ(Digests(st[0]), Digests(st[1]));
  EXPECT_EQ(Digests(st[0]).size(), 5u);
  EXPECT_EQ(LogBytes(a), LogBytes(b));
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
  ASSERT_TRUE(clients::LoadDemoShop(*a.channel(), SmallShop(), 1000, &loaded).ok());
  Converged({&a, &b});
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
  std::set<std::string> acknowledged;
  int batch_number = 0;
  // Publishes one batch of 20 new purchases through `via`; true when acknowledged.
  const auto publish = [&](ServerProcess& via) {
    std::vector<v1::Event> events;
    for (int i = 0; i < 20; ++i) {
      const std::string id = absl::StrCat("k-", batch_number, "-", i);
      events.push_back(Purchase(id, absl::StrCat("user", i), absl::StrCat("item", i)));
    }
    ++batch_number;
    v1::PublishSummary summary;
    if (!Publish(*via.channel(), events, &summary).ok()) return false;
    for (const v1::Event& e : events) acknowledged.insert(e.event_id());
    return true;
  };
  ASSERT_TRUE(publish(a));

  redis.Kill();
  EXPECT_FALSE(publish(a)) << "a write acknowledged without Redis";
  EXPECT_FALSE(publish(*b));
  // Reads go on from memory.
  for (ServerProcess* replica : {&a, b.get()}) {
    const grpc::Status s = SegmentOf(*replica->channel(), customer);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
  redis.Start();
  // Back within the replicas' backoff.
  bool resumed = false;
  for (int i = 0; i < 100 && !resumed; ++i) {
    resumed = publish(a);
    if (!resumed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(resumed);

  // A replica killed while writes go on catches up from its position.
  b->Kill();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(publish(a));
  b = std::make_unique<ServerProcess>(dir.path() + "/b", ReplicaFlags(redis));
  ASSERT_TRUE(publish(*b));
  const std::vector<v1::ModelStatusResponse> st = Converged({&a, b.get()});
  EXPECT_EQ(Digests(st[0]), Digests(st[1]));
  for (ServerProcess* replica : {&a, b.get()}) {
    std::multiset<std::string> logged;
    for (const v1::LoggedEvent& e : ReadWholeLog(*v1::Admin::NewStub(replica->channel()))) {
      if (acknowledged.count(e.event().event_id())) logged.insert(e.event().event_id());
    }
    EXPECT_EQ(logged.size(), acknowledged.size()) << "every acknowledged event, each once";
    EXPECT_EQ(std::set<std::string>(logged.begin(), logged.end()), acknowledged);
  }
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

}  // namespace
}  // namespace mercato::testing
