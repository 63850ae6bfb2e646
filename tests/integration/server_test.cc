// End-to-end tests of the real mercato-server binary: real gRPC calls on
// loopback, a real RocksDB in a temporary folder, SIGKILL and restart.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <cmath>
#include <future>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

v1::Event MakeEvent(const std::string& id, int user, int item) {
  v1::Event e;
  e.set_event_id(id);
  e.set_type(v1::VIEW);
  e.set_user_id(absl::StrCat("u", user));
  e.set_item_id(absl::StrCat("i", item));
  e.set_timestamp_ms(1700000000000 + user);
  return e;
}

TEST(ServerTest, KillDuringEightStreamsLosesNoAcknowledgedEvent) {
  TempDir dir;
  constexpr int kStreams = 8;
  constexpr int kPerStream = 500;
  constexpr int kTotal = 100000;
  std::vector<std::vector<std::string>> acked(kStreams);
  std::atomic<int> acked_total{0};
  {
    ServerProcess server(dir.path());
    auto ingest = v1::Ingest::NewStub(server.channel());
    std::vector<std::thread> producers;
    for (int t = 0; t < kStreams; ++t) {
      producers.emplace_back([&, t] {
        for (int round = 0; round * kPerStream * kStreams < kTotal; ++round) {
          v1::PublishSummary summary;
          auto ctx = Ctx();
          auto writer = ingest->Publish(ctx.get(), &summary);
          std::vector<std::string> ids;
          for (int i = 0; i < kPerStream; ++i) {
            ids.push_back(absl::StrCat("s", t, "-r", round, "-", i));
            if (!writer->Write(MakeEvent(ids.back(), t * 1000 + i, round))) break;
          }
          writer->WritesDone();
          if (!writer->Finish().ok()) return;  // the server was killed
          ASSERT_EQ(summary.accepted() + summary.duplicates(), kPerStream);
          acked[t].insert(acked[t].end(), ids.begin(), ids.end());
          acked_total += kPerStream;
        }
      });
    }
    // Kill it mid-stream, with about half of the events acknowledged.
    while (acked_total.load() < kTotal / 2)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    server.Kill();
    for (auto& p : producers) p.join();
  }
  ASSERT_GE(acked_total.load(), kTotal / 2);
  ASSERT_LT(acked_total.load(), kTotal) << "the kill came too late to test anything";

  ServerProcess server(dir.path());
  auto admin = v1::Admin::NewStub(server.channel());
  std::vector<v1::LoggedEvent> log = ReadWholeLog(*admin);
  absl::flat_hash_map<std::string, int> seen;
  for (size_t i = 0; i < log.size(); ++i) {
    ASSERT_EQ(log[i].sequence(), i + 1) << "sequence numbers must be dense";
    ++seen[log[i].event().event_id()];
  }
  for (const auto& [id, n] : seen) ASSERT_EQ(n, 1) << id << " is in the log " << n << " times";
  for (const auto& ids : acked) {
    for (const std::string& id : ids) ASSERT_TRUE(seen.contains(id)) << "lost acknowledged " << id;
  }
  const v1::ModelStatusResponse st = Status(*admin);
  EXPECT_TRUE(st.ready());
  EXPECT_EQ(st.log_sequence(), log.size());
  EXPECT_EQ(st.applied_sequence(), log.size()) << "recovery replays the whole log before SERVING";
  absl::flat_hash_set<std::string> users;
  for (const v1::LoggedEvent& e : log) users.insert(e.event().user_id());
  EXPECT_EQ(ModelCount(st, "recommend", "users"), users.size());

  // Sending the acknowledged events again applies none of them.
  auto ingest = v1::Ingest::NewStub(server.channel());
  v1::EventBatch batch;
  for (const std::string& id : acked[0]) *batch.add_events() = MakeEvent(id, 0, 0);
  v1::PublishSummary again;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &again).ok());
  EXPECT_EQ(again.accepted(), 0u);
  EXPECT_EQ(again.duplicates(), acked[0].size());
  EXPECT_EQ(again.last_sequence(), log.size());
}

TEST(ServerTest, RepeatedEventIdsAreAppliedOnce) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto ingest = v1::Ingest::NewStub(server.channel());
  auto admin = v1::Admin::NewStub(server.channel());
  v1::EventBatch batch;
  for (int i = 0; i < 10; ++i) *batch.add_events() = MakeEvent(absl::StrCat("e", i % 4), i, i);
  v1::PublishSummary first, second;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &first).ok());
  EXPECT_EQ(first.accepted(), 4u);
  EXPECT_EQ(first.duplicates(), 6u);
  EXPECT_EQ(first.last_sequence(), 4u);
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &second).ok());
  EXPECT_EQ(second.accepted(), 0u);
  EXPECT_EQ(second.duplicates(), 10u);
  const v1::ModelStatusResponse st = WaitCaughtUp(*admin);
  EXPECT_EQ(st.log_sequence(), 4u);
  EXPECT_EQ(ModelCount(st, "recommend", "users"), 4u);
  // The first occurrence is the one kept.
  std::vector<v1::LoggedEvent> log = ReadWholeLog(*admin);
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[1].event().user_id(), "u1");
}

struct BadCase {
  const char* name;
  std::function<void(v1::EventBatch&)> spoil;
  const char* field;
};

TEST(ServerTest, MalformedRequestsNameTheFieldAndTheServerKeepsServing) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto ingest = v1::Ingest::NewStub(server.channel());
  auto admin = v1::Admin::NewStub(server.channel());
  const std::vector<BadCase> cases = {
      {"empty id", [](v1::EventBatch& b) { b.mutable_events(0)->set_event_id(""); },
       "events[0].event_id"},
      {"10 KB id",
       [](v1::EventBatch& b) { b.mutable_events(0)->set_user_id(std::string(10240, 'u')); },
       "events[0].user_id"},
      {"NaN price",
       [](v1::EventBatch& b) {
         b.mutable_events(1)->set_type(v1::PURCHASE);
         b.mutable_events(1)->set_unit_price(std::nan(""));
       },
       "events[1].unit_price"},
      {"infinite quantity", [](v1::EventBatch& b) { b.mutable_events(1)->set_quantity(INFINITY); },
       "events[1].quantity"},
      {"unknown enum value",
       [](v1::EventBatch& b) { b.mutable_events(0)->set_type(static_cast<v1::EventType>(99)); },
       "events[0].type"},
      {"unspecified type",
       [](v1::EventBatch& b) { b.mutable_events(0)->set_type(v1::EVENT_TYPE_UNSPECIFIED); },
       "events[0].type"},
      {"zero events", [](v1::EventBatch& b) { b.clear_events(); }, "events"},
      {"10,001 events",
       [](v1::EventBatch& b) {
         for (int i = 0; i < 9999; ++i) *b.add_events() = MakeEvent(absl::StrCat("x", i), 1, 1);
       },
       "events"},
      {"label without order",
       [](v1::EventBatch& b) { b.mutable_events(0)->set_type(v1::FRAUD_LABEL); },
       "events[0].order_id"},
      {"tenant", [](v1::EventBatch& b) { b.set_tenant("t1"); }, "tenant"},
  };
  for (const BadCase& c : cases) {
    v1::EventBatch batch;
    *batch.add_events() = MakeEvent("ok-1", 1, 1);
    *batch.add_events() = MakeEvent("ok-2", 2, 2);
    c.spoil(batch);
    v1::PublishSummary summary;
    grpc::Status s = ingest->PublishBatch(Ctx().get(), batch, &summary);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_EQ(s.error_message().rfind(absl::StrCat(c.field, ":"), 0), 0u)
        << c.name << ": " << s.error_message();
  }
  // Read limits: 0 and 10^6.
  for (uint32_t limit : {0u, 1000000u}) {
    v1::ReadEventsRequest req;
    req.set_from_sequence(1);
    req.set_limit(limit);
    v1::ReadEventsResponse resp;
    grpc::Status s = admin->ReadEvents(Ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << limit;
    EXPECT_EQ(s.error_message().rfind("limit:", 0), 0u) << s.error_message();
  }
  // Nothing of the bad batches was written, and the server still serves.
  const v1::ModelStatusResponse st = Status(*admin);
  EXPECT_TRUE(st.ready());
  EXPECT_EQ(st.log_sequence(), 0u);
  v1::EventBatch good;
  *good.add_events() = MakeEvent("ok-1", 1, 1);
  v1::PublishSummary summary;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), good, &summary).ok());
  EXPECT_EQ(summary.accepted(), 1u);
}

TEST(ServerTest, StreamSkipsInvalidEventsAndListsThem) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto ingest = v1::Ingest::NewStub(server.channel());
  v1::PublishSummary summary;
  auto ctx = Ctx();
  auto writer = ingest->Publish(ctx.get(), &summary);
  for (int i = 0; i < 5; ++i) {
    v1::Event e = MakeEvent(absl::StrCat("st-", i), i, i);
    if (i == 2) e.set_timestamp_ms(-5);
    ASSERT_TRUE(writer->Write(e));
  }
  writer->WritesDone();
  ASSERT_TRUE(writer->Finish().ok());
  EXPECT_EQ(summary.accepted(), 4u);
  EXPECT_EQ(summary.rejected(), 1u);
  ASSERT_EQ(summary.rejections_size(), 1);
  EXPECT_EQ(summary.rejections(0).index(), 2u);
  EXPECT_EQ(summary.rejections(0).event_id(), "st-2");
  EXPECT_EQ(summary.rejections(0).reason().rfind("event[2].timestamp_ms:", 0), 0u)
      << summary.rejections(0).reason();
}

// A message that is no Event, between two valid ones: the stream goes on,
// and the summary counts and lists it.
TEST(ServerTest, StreamCountsAnUndecodableMessageAndKeepsTheRest) {
  TempDir dir;
  ServerProcess server(dir.path());
  v1::PublishSummary summary;
  auto ctx = Ctx();
  std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
      grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
          server.channel().get(),
          grpc::internal::RpcMethod("/mercato.v1.Ingest/Publish",
                                    grpc::internal::RpcMethod::CLIENT_STREAMING),
          ctx.get(), &summary));
  for (const std::string& bytes :
       {MakeEvent("raw-0", 1, 1).SerializeAsString(), std::string("\xff\xff\xff\x01", 4),
        MakeEvent("raw-2", 2, 2).SerializeAsString()}) {
    grpc::Slice slice(bytes);
    ASSERT_TRUE(writer->Write(grpc::ByteBuffer(&slice, 1)));
  }
  writer->WritesDone();
  const grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(summary.accepted(), 2u);
  EXPECT_EQ(summary.rejected(), 1u);
  ASSERT_EQ(summary.rejections_size(), 1);
  EXPECT_EQ(summary.rejections(0).index(), 1u);
  EXPECT_EQ(
      summary.rejections(0).reason().rfind("event[1]: bytes that are not a mercato.v1.Event", 0),
      0u)
      << summary.rejections(0).reason();
  auto admin = v1::Admin::NewStub(server.channel());
  EXPECT_EQ(ReadWholeLog(*admin).size(), 2u);
}

// Bytes that are no request get INVALID_ARGUMENT saying so, from the
// synchronous services and the completion-queue ones alike.
TEST(ServerTest, UndecodableRequestsGetInvalidArgument) {
  TempDir dir;
  ServerProcess server(dir.path());
  grpc::GenericStub stub(server.channel());
  for (const char* method : {"/mercato.v1.Ingest/PublishBatch", "/mercato.v1.Catalog/GetItem",
                             "/mercato.v1.Admin/ModelStatus", "/mercato.v1.Recommender/Recommend",
                             "/mercato.v1.Fraud/Score", "/grpc.health.v1.Health/Check"}) {
    grpc::Slice slice(std::string("\xff\xff\xff\x01", 4));
    grpc::ByteBuffer request(&slice, 1), response;
    auto ctx = Ctx();
    std::promise<grpc::Status> done;
    stub.UnaryCall(ctx.get(), method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) { done.set_value(std::move(s)); });
    const grpc::Status s = done.get_future().get();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_EQ(s.error_message().rfind("request: bytes that are not a ", 0), 0u)
        << method << ": " << s.error_message();
  }
  auto admin = v1::Admin::NewStub(server.channel());
  EXPECT_TRUE(Status(*admin).ready());
}

TEST(ServerTest, SigtermDrainsCheckpointsAndExitsZero) {
  TempDir dir;
  {
    ServerProcess server(dir.path(), {"--checkpoint_interval_s=3600", "--drain_timeout_s=2"});
    auto ingest = v1::Ingest::NewStub(server.channel());
    v1::EventBatch batch;
    for (int i = 0; i < 1000; ++i) *batch.add_events() = MakeEvent(absl::StrCat("e", i), i, i);
    v1::PublishSummary summary;
    ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &summary).ok());
    const int status = server.Terminate();
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  ServerProcess server(dir.path());
  auto admin = v1::Admin::NewStub(server.channel());
  const v1::ModelStatusResponse st = Status(*admin);
  EXPECT_EQ(st.last_checkpoint_sequence(), 1000u) << "SIGTERM writes a final checkpoint";
  EXPECT_GT(st.last_checkpoint_ms(), 0);
  EXPECT_EQ(ModelCount(st, "recommend", "users"), 1000u);
}

// A server killed before its first timed checkpoint still restarts from a
// checkpoint, not from the whole log.
TEST(ServerTest, CheckpointsAfterEveryNEventsBoundTheReplay) {
  TempDir dir;
  uint64_t checkpointed = 0;
  {
    ServerProcess server(dir.path(),
                         {"--checkpoint_interval_s=3600", "--checkpoint_every_events=1000"});
    auto ingest = v1::Ingest::NewStub(server.channel());
    auto admin = v1::Admin::NewStub(server.channel());
    v1::EventBatch batch;
    for (int i = 0; i < 2500; ++i) *batch.add_events() = MakeEvent(absl::StrCat("n", i), i, i);
    v1::PublishSummary summary;
    ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &summary).ok());
    WaitCaughtUp(*admin);
    for (int i = 0; i < 1000 && checkpointed < 1000; ++i) {
      checkpointed = Status(*admin).last_checkpoint_sequence();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_GE(checkpointed, 1000u) << "no checkpoint within 10 s of 2,500 applied events";
    server.Kill();
  }
  ServerProcess server(dir.path());
  auto admin = v1::Admin::NewStub(server.channel());
  const v1::ModelStatusResponse st = WaitCaughtUp(*admin);
  EXPECT_EQ(st.last_checkpoint_sequence(), checkpointed);
  EXPECT_EQ(ModelCount(st, "recommend", "users"), 2500u);
}

TEST(ServerTest, CheckpointThenKillRestoresFromCheckpointAndTail) {
  TempDir dir;
  {
    ServerProcess server(dir.path(), {"--checkpoint_interval_s=3600"});
    auto ingest = v1::Ingest::NewStub(server.channel());
    auto admin = v1::Admin::NewStub(server.channel());
    for (int round = 0; round < 2; ++round) {
      v1::EventBatch batch;
      for (int i = 0; i < 300; ++i) {
        *batch.add_events() = MakeEvent(absl::StrCat("r", round, "-", i), round * 300 + i, i);
      }
      v1::PublishSummary summary;
      ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &summary).ok());
      if (round == 0) {
        WaitCaughtUp(*admin);
        v1::CheckpointResponse cp;
        ASSERT_TRUE(admin->Checkpoint(Ctx().get(), v1::CheckpointRequest(), &cp).ok());
        EXPECT_EQ(cp.sequence(), 300u);
        EXPECT_GT(cp.bytes(), 0u);
      }
    }
    server.Kill();
  }
  ServerProcess server(dir.path());
  auto admin = v1::Admin::NewStub(server.channel());
  const v1::ModelStatusResponse st = Status(*admin);
  EXPECT_EQ(st.last_checkpoint_sequence(), 300u);
  EXPECT_EQ(st.applied_sequence(), 600u);
  EXPECT_EQ(ModelCount(st, "recommend", "users"), 600u)
      << "checkpoint state plus the replayed tail";
}

TEST(ServerTest, CatalogUpsertGetDeleteSurvivesRestart) {
  TempDir dir;
  v1::Item item;
  item.set_item_id("mug-1");
  item.add_category_path("home");
  item.add_category_path("mugs");
  item.set_price(12.5);
  item.set_unit_cost(4);
  item.set_in_stock(true);
  (*item.mutable_attributes())["colour"] = "blue";
  {
    ServerProcess server(dir.path());
    auto catalog = v1::Catalog::NewStub(server.channel());
    v1::UpsertItemsRequest req;
    *req.add_items() = item;
    v1::UpsertItemsResponse resp;
    ASSERT_TRUE(catalog->UpsertItems(Ctx().get(), req, &resp).ok());
    EXPECT_EQ(resp.upserted(), 1u);
    req.mutable_items(0)->set_price(-1);
    grpc::Status bad = catalog->UpsertItems(Ctx().get(), req, &resp);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(bad.error_message().rfind("items[0].price:", 0), 0u) << bad.error_message();
    server.Kill();
  }
  ServerProcess server(dir.path());
  auto catalog = v1::Catalog::NewStub(server.channel());
  v1::GetItemRequest get;
  get.set_item_id("mug-1");
  v1::Item got;
  ASSERT_TRUE(catalog->GetItem(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.SerializeAsString(), item.SerializeAsString());
  v1::DeleteItemRequest del;
  del.set_item_id("mug-1");
  v1::DeleteItemResponse deleted;
  ASSERT_TRUE(catalog->DeleteItem(Ctx().get(), del, &deleted).ok());
  EXPECT_TRUE(deleted.deleted());
  ASSERT_TRUE(catalog->DeleteItem(Ctx().get(), del, &deleted).ok());
  EXPECT_FALSE(deleted.deleted());
  EXPECT_EQ(catalog->GetItem(Ctx().get(), get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace mercato::testing

namespace mercato::testing {
namespace {

TEST(ServerTest, HealthAnswersPerServiceAndWatchSeesTheDrain) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  for (const char* name : {"", "mercato.v1.Pricing", "mercato.v1.Ingest"}) {
    req.set_service(name);
    ASSERT_TRUE(health->Check(Ctx().get(), req, &resp).ok()) << name;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << name;
  }
  req.set_service("no.such.Service");
  EXPECT_EQ(health->Check(Ctx().get(), req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);

  req.set_service("");
  auto ctx = Ctx();
  auto watch = health->Watch(ctx.get(), req);
  ASSERT_TRUE(watch->Read(&resp));
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  std::thread term([&] { server.Terminate(); });
  // The stream ends (NOT_SERVING first, when the drain lets it through).
  while (watch->Read(&resp)) {
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  }
  term.join();
}

TEST(ServerTest, RefusesServingQueueFlagsBelowOneNamingTheFlag) {
  for (const std::string flag : {"--cq_threads", "--max_queued_calls"}) {
    std::string err;
    EXPECT_EQ(RunServer("--listen=127.0.0.1:0 " + flag + "=0", &err), 2) << flag;
    EXPECT_NE(err.find(flag + ": must be >= 1"), std::string::npos) << flag << ": " << err;
  }
}

}  // namespace
}  // namespace mercato::testing
