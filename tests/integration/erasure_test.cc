// Erasure end to end on a real server and its RocksDB folder: after
// DeleteUser is acknowledged and its erasure completes, no file in the data
// folder holds the customer's id, session ids, payment fingerprint, device
// id, address hash or the ids of their events, also when the server was
// killed right after the acknowledgement; other customers' data stays, and
// the models still answer.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/client_util.h"
#include "mercato/v1/admin.grpc.pb.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/fraud.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/segmenter.grpc.pb.h"
#include "testing/demo_shop.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

// Strings no other part of the data would hold by chance.
constexpr char kUser[] = "zq7Xw9Kp3VtY";
constexpr char kSession[] = "sess-Qm4rT8Lx";
constexpr char kCard[] = "card-Hh2Lw6Yp";
constexpr char kDevice[] = "dev-Rr5Nc1Zk";
constexpr char kAddress[] = "addr-Bb3Kv7Qe";
constexpr char kOther[] = "customer-Vv8Jd2";
constexpr int64_t kDay = 86400000;
constexpr int64_t kT0 = 1732280000000;

// The files under `dir` whose bytes contain `needle`.
std::vector<std::string> FilesHolding(const std::string& dir, const std::string& needle) {
  std::vector<std::string> found;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    if (bytes.find(needle) != std::string::npos) found.push_back(f.path().filename().string());
  }
  return found;
}

v1::Event Interaction(const std::string& id, const std::string& user, const std::string& session,
                      v1::EventType type, const std::string& item, int64_t t) {
  v1::Event e;
  e.set_event_id(id);
  e.set_type(type);
  e.set_user_id(user);
  e.set_session_id(session);
  e.set_item_id(item);
  e.set_timestamp_ms(t);
  if (type == v1::PURCHASE) {
    e.set_quantity(1);
    e.set_unit_price(20);
    e.set_order_id(absl::StrCat("order-", t));
  }
  return e;
}

v1::Order Order(const std::string& id, const std::string& user, const std::string& device) {
  v1::Order o;
  o.set_order_id(id);
  o.set_user_id(user);
  o.set_amount(80);
  o.set_currency("EUR");
  o.set_payment_fingerprint(kCard);  // shared by both customers
  o.set_device_id(device);
  o.set_shipping_address_hash(user == kUser ? kAddress : "addr-other");
  o.set_billing_country("DE");
  o.set_shipping_country("DE");
  o.set_ip_country("DE");
  o.set_timestamp_ms(kT0 + 30 * kDay);
  return o;
}

v1::ModelStatusResponse WaitErased(v1::Admin::Stub& admin) {
  v1::ModelStatusResponse st;
  for (int i = 0; i < 600; ++i) {
    st = Status(admin);
    if (st.ready() && st.erasures_pending() == 0 && !st.erasure_compaction_due()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return st;
}

TEST(ErasureTest, NothingInTheDataFolderIdentifiesAnErasedCustomerAfterKillMinusNine) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  auto server = std::make_unique<ServerProcess>(data);
  {
    auto catalog = v1::Catalog::NewStub(server->channel());
    v1::UpsertItemsRequest items;
    for (int i = 0; i < 6; ++i) {
      v1::Item* item = items.add_items();
      item->set_item_id(absl::StrCat("item", i));
      item->add_category_path("kitchen");
      item->set_price(20);
    }
    v1::UpsertItemsResponse upserted;
    ASSERT_TRUE(catalog->UpsertItems(Ctx().get(), items, &upserted).ok());
  }
  auto ingest = v1::Ingest::NewStub(server->channel());
  v1::EventBatch batch;
  for (int d = 0; d < 20; ++d) {
    for (const std::string user : {std::string(kUser), std::string(kOther)}) {
      const std::string session = user == kUser ? kSession : "sess-other";
      *batch.add_events() = Interaction(absl::StrCat("evt-", user, "-", d), user, session,
                                        d % 4 == 0 ? v1::PURCHASE : v1::VIEW,
                                        absl::StrCat("item", d % 6), kT0 + d * kDay);
    }
  }
  v1::PublishSummary published;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &published).ok());
  auto fraud = v1::Fraud::NewStub(server->channel());
  for (const auto& [order, user, device] :
       {std::tuple{"o-u", kUser, kDevice}, std::tuple{"o-v", kOther, "dev-other"}}) {
    v1::ScoreResponse scored;
    ASSERT_TRUE(fraud->Score(Ctx().get(), Order(order, user, device), &scored).ok());
  }
  auto admin = v1::Admin::NewStub(server->channel());
  // Both scored orders are in the log, and in a checkpoint.
  for (int i = 0; i < 100 && Status(*admin).log_sequence() < published.last_sequence() + 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  WaitCaughtUp(*admin);
  v1::CheckpointResponse cp;
  ASSERT_TRUE(admin->Checkpoint(Ctx().get(), {}, &cp).ok());
  for (const char* secret : {kUser, kSession, kCard, kDevice, kAddress}) {
    ASSERT_FALSE(FilesHolding(data, secret).empty()) << secret << " is in the folder to begin with";
  }

  v1::DeleteUserRequest del;
  del.set_user_id(kUser);
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(admin->DeleteUser(Ctx().get(), del, &deleted).ok());
  server->Kill();  // before the erasure completes, most likely
  server = std::make_unique<ServerProcess>(data);
  admin = v1::Admin::NewStub(server->channel());
  const v1::ModelStatusResponse st = WaitErased(*admin);
  ASSERT_EQ(st.erasures_pending(), 0u);
  ASSERT_FALSE(st.erasure_compaction_due());

  for (const char* secret : {kUser, kSession, kCard, kDevice, kAddress}) {
    EXPECT_EQ(FilesHolding(data, secret), std::vector<std::string>{}) << secret;
  }
  // The log names placeholders; the other customer's events stay theirs.
  const std::string erased = absl::StrCat("erased-", deleted.sequence());
  int erased_events = 0, other_events = 0;
  for (const v1::LoggedEvent& e : ReadWholeLog(*admin)) {
    if (e.event().user_id() == erased) ++erased_events;
    if (e.event().user_id() == kOther) {
      ++other_events;
      if (e.event().type() != v1::ORDER_SCORED) EXPECT_EQ(e.event().session_id(), "sess-other");
    }
  }
  EXPECT_EQ(erased_events, 20 + 1 + 1);  // the events, the scored order, the erasure
  EXPECT_EQ(other_events, 20 + 1);
  // The models forgot the customer and still serve the other one.
  auto segmenter = v1::Segmenter::NewStub(server->channel());
  v1::SegmentRequest seg;
  seg.set_user_id(kUser);
  v1::SegmentResponse segment;
  EXPECT_EQ(segmenter->Segment(Ctx().get(), seg, &segment).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Two customers bought before the erasure; one is left (too few for a fit).
  seg.set_user_id(kOther);
  const grpc::Status other = segmenter->Segment(Ctx().get(), seg, &segment);
  EXPECT_NE(other.error_message().find(" 1 customers so far"), std::string::npos)
      << other.error_message();
  // The erasure is audited without the customer's id.
  v1::ReadAuditRequest req;
  req.set_from_number(1);
  req.set_limit(100);
  v1::ReadAuditResponse audit;
  ASSERT_TRUE(admin->ReadAudit(Ctx().get(), req, &audit).ok());
  int eraser_records = 0;
  for (const v1::AuditRecord& r : audit.records()) eraser_records += r.who() == "eraser";
  EXPECT_EQ(eraser_records, 2) << audit.DebugString();  // the rewrite and the compaction
  EXPECT_EQ(audit.DebugString().find(kUser), std::string::npos);
  // Its idempotency keys went with it: the same event id is new again.
  ingest = v1::Ingest::NewStub(server->channel());
  batch.Clear();
  *batch.add_events() = Interaction(absl::StrCat("evt-", kUser, "-3"), "returning", "", v1::VIEW,
                                    "item1", kT0 + 40 * kDay);
  grpc::Status again = ingest->PublishBatch(Ctx().get(), batch, &published);
  ASSERT_TRUE(again.ok()) << again.error_message();
  EXPECT_EQ(published.accepted(), 1u);
}

std::vector<std::string> Recommended(v1::Recommender::Stub& stub, const std::string& user,
                                     bool* personal = nullptr) {
  v1::RecommendRequest req;
  req.set_user_id(user);
  req.set_count(10);
  v1::RecommendResponse resp;
  const grpc::Status s = stub.Recommend(Ctx().get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  std::vector<std::string> items;
  if (personal) *personal = false;
  for (const v1::ScoredItem& item : resp.items()) {
    items.push_back(absl::StrCat(item.item_id(), "/", item.source()));
    if (personal && item.source() == v1::PERSONAL) *personal = true;
  }
  return items;
}

// As the check has it: the demo shop loaded, the erasure finished,
// the server stopped; then no byte of the folder names the customer, and
// after a restart the models have forgotten them while every other
// customer's answers are those from before the restart.
TEST(ErasureTest, ADemoShopCustomerLeavesNoTraceAndOthersAnswerAsBefore) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  core::DemoShopOptions options;
  options.users = 300;
  options.items = 60;
  options.days = 40;
  const core::DemoShop shop = core::GenerateDemoShop(options);
  const std::string target = "user299";  // no other id contains it
  std::vector<std::string> others;
  for (int i = 0; i < 8; ++i) others.push_back(absl::StrCat("user", 10 + i));
  auto server = std::make_unique<ServerProcess>(data);
  v1::PublishSummary summary;
  ASSERT_TRUE(clients::LoadDemoShop(*server->channel(), shop, 2000, &summary).ok());
  auto fraud = v1::Fraud::NewStub(server->channel());
  for (const auto& [order, user, device] :
       {std::tuple{"demo-o-1", target.c_str(), kDevice}, std::tuple{"demo-o-2", "user10", "dev-ten"}}) {
    v1::ScoreResponse scored;
    ASSERT_TRUE(fraud->Score(Ctx().get(), Order(order, user, device), &scored).ok());
  }
  auto admin = v1::Admin::NewStub(server->channel());
  auto recommender = v1::Recommender::NewStub(server->channel());
  WaitCaughtUp(*admin, 60);
  bool personal = false;
  Recommended(*recommender, target, &personal);
  ASSERT_TRUE(personal) << "the customer had personal recommendations";
  ASSERT_FALSE(FilesHolding(data, target).empty());

  v1::DeleteUserRequest del;
  del.set_user_id(target);
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(admin->DeleteUser(Ctx().get(), del, &deleted).ok());
  const v1::ModelStatusResponse st = WaitErased(*admin);
  ASSERT_EQ(st.erasures_pending(), 0u);
  ASSERT_FALSE(st.erasure_compaction_due());
  std::map<std::string, std::vector<std::string>> before;
  for (const std::string& u : others) before[u] = Recommended(*recommender, u);
  ASSERT_EQ(server->Terminate(), 0);

  for (const std::string& secret : {target, std::string(kCard), std::string(kDevice)}) {
    EXPECT_EQ(FilesHolding(data, secret), std::vector<std::string>{}) << secret;
  }
  server = std::make_unique<ServerProcess>(data);
  admin = v1::Admin::NewStub(server->channel());
  recommender = v1::Recommender::NewStub(server->channel());
  WaitCaughtUp(*admin, 60);
  auto segmenter = v1::Segmenter::NewStub(server->channel());
  v1::SegmentRequest seg;
  seg.set_user_id(target);
  v1::SegmentResponse segment;
  EXPECT_EQ(segmenter->Segment(Ctx().get(), seg, &segment).error_code(),
            grpc::StatusCode::NOT_FOUND);
  Recommended(*recommender, target, &personal);
  EXPECT_FALSE(personal);
  for (const std::string& u : others) EXPECT_EQ(Recommended(*recommender, u), before[u]) << u;
}

}  // namespace
}  // namespace mercato::testing
