// Recommender end to end: the demo shop through the real server, a fresh
// purchase seen by the next call, bad requests, and the same answers after
// SIGKILL or SIGTERM and a restart.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "clients/client_util.h"
#include "mercato/v1/catalog.grpc.pb.h"
#include "mercato/v1/ingest.grpc.pb.h"
#include "mercato/v1/recommender.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_client.h"

namespace mercato::testing {
namespace {

core::DemoShopOptions SmallShop() {
  core::DemoShopOptions o;
  o.users = 600;
  o.items = 200;
  o.days = 40;
  return o;
}

const std::vector<std::string> kFlags = {"--rec_retrain_every=0"};

class RecommendTest : public ::testing::Test {
 protected:
  // Loads the shop, retrains, and checkpoints the retrained model.
  void LoadShop(ServerProcess& server) {
    v1::PublishSummary summary;
    ASSERT_TRUE(clients::LoadDemoShop(*server.channel(), shop_, 5000, &summary).ok());
    auto admin = v1::Admin::NewStub(server.channel());
    ASSERT_EQ(WaitCaughtUp(*admin, 60).lag_events(), 0u);
    v1::RetrainRequest retrain;
    retrain.set_model("recommend");
    v1::RetrainResponse started;
    ASSERT_TRUE(admin->Retrain(Ctx().get(), retrain, &started).ok());
    for (int i = 0; i < 600 && ModelCount(Status(*admin), "recommend", "retrains") == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_EQ(ModelCount(Status(*admin), "recommend", "retrains"), 1u);
    v1::CheckpointResponse written;
    ASSERT_TRUE(admin->Checkpoint(Ctx().get(), v1::CheckpointRequest(), &written).ok());
  }
  TempDir dir_;
  const core::DemoShop shop_ = core::GenerateDemoShop(SmallShop());
};

v1::RecommendResponse Ask(v1::Recommender::Stub& rec, const v1::RecommendRequest& req,
                          grpc::Status* status = nullptr) {
  v1::RecommendResponse resp;
  grpc::Status s = rec.Recommend(Ctx().get(), req, &resp);
  if (status) *status = s;
  else EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

std::vector<std::string> Ids(const v1::RecommendResponse& r) {
  std::vector<std::string> ids;
  for (const auto& item : r.items()) ids.push_back(item.item_id());
  return ids;
}

TEST_F(RecommendTest, ServesTheShopAndTheSameAfterRestarts) {
  auto server = std::make_unique<ServerProcess>(dir_.path(), kFlags);
  LoadShop(*server);
  auto rec = v1::Recommender::NewStub(server->channel());
  v1::RecommendRequest req;
  req.set_user_id(shop_.users[3].user_id);
  req.set_count(10);
  req.set_explain(true);
  req.mutable_filter()->set_exclude_purchased(true);
  const v1::RecommendResponse first = Ask(*rec, req);
  ASSERT_EQ(first.items_size(), 10);
  EXPECT_GT(first.model_version(), 0u);
  for (const auto& item : first.items()) {
    EXPECT_EQ(item.source(), v1::PERSONAL);
    EXPECT_GT(item.because_size(), 0);
  }

  v1::SimilarItemsRequest similar;
  similar.set_item_id(shop_.items[5].item.item_id);
  similar.set_count(5);
  v1::RecommendResponse neighbours;
  ASSERT_TRUE(rec->SimilarItems(Ctx().get(), similar, &neighbours).ok());
  ASSERT_EQ(neighbours.items_size(), 5);
  EXPECT_EQ(neighbours.items(0).source(), v1::SIMILAR);

  v1::BoughtTogetherRequest together;
  together.set_item_id(shop_.items[5].item.item_id);
  together.set_count(5);
  together.set_min_support(1);
  v1::BoughtTogetherResponse pairs;
  ASSERT_TRUE(rec->BoughtTogether(Ctx().get(), together, &pairs).ok());
  ASSERT_GT(pairs.items_size(), 0);
  EXPECT_GE(pairs.items(0).support(), 1u);
  EXPECT_GT(pairs.items(0).lift(), 0);

  // Replayed from the checkpoint after SIGKILL, then after SIGTERM.
  server->Kill();
  server = std::make_unique<ServerProcess>(dir_.path(), kFlags);
  rec = v1::Recommender::NewStub(server->channel());
  v1::RecommendResponse again = Ask(*rec, req);
  EXPECT_EQ(Ids(again), Ids(first));
  ASSERT_EQ(again.items_size(), first.items_size());
  for (int i = 0; i < first.items_size(); ++i) {
    EXPECT_EQ(again.items(i).score(), first.items(i).score());
  }
  const int status = server->Terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  server = std::make_unique<ServerProcess>(dir_.path(), kFlags);
  rec = v1::Recommender::NewStub(server->channel());
  EXPECT_EQ(Ids(Ask(*rec, req)), Ids(first));
}

TEST_F(RecommendTest, AFreshPurchaseIsExcludedByTheNextCalls) {
  ServerProcess server(dir_.path(), kFlags);
  LoadShop(server);
  auto rec = v1::Recommender::NewStub(server.channel());
  auto ingest = v1::Ingest::NewStub(server.channel());
  v1::RecommendRequest req;
  req.set_user_id(shop_.users[5].user_id);
  req.set_count(3);
  req.mutable_filter()->set_exclude_purchased(true);
  const std::string top = Ask(*rec, req).items(0).item_id();

  v1::Event buy;
  buy.set_type(v1::PURCHASE);
  buy.set_event_id("fresh-purchase");
  buy.set_user_id(req.user_id());
  buy.set_item_id(top);
  buy.set_order_id("fresh-order");
  buy.set_quantity(1);
  buy.set_unit_price(10);
  buy.set_timestamp_ms(shop_.events.back().timestamp_ms + 1000);
  v1::EventBatch batch;
  *batch.add_events() = buy;
  v1::PublishSummary published;
  ASSERT_TRUE(ingest->PublishBatch(Ctx().get(), batch, &published).ok());
  const auto start = std::chrono::steady_clock::now();
  bool excluded = false;
  while (!excluded && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    const std::vector<std::string> ids = Ids(Ask(*rec, req));
    excluded = std::find(ids.begin(), ids.end(), top) == ids.end();
  }
  EXPECT_TRUE(excluded) << top << " still recommended 5 s after its purchase";
}

// A deleted catalogue item is never recommended, as similar or as bought
// together once the delete is applied, also after a restart; an upsert
// brings it back.
TEST_F(RecommendTest, ADeletedItemIsNeverServedAgain) {
  auto server = std::make_unique<ServerProcess>(dir_.path(), kFlags);
  LoadShop(*server);
  auto rec = v1::Recommender::NewStub(server->channel());
  auto catalog = v1::Catalog::NewStub(server->channel());
  auto admin = v1::Admin::NewStub(server->channel());
  v1::BoughtTogetherRequest together;
  together.set_item_id(shop_.items[5].item.item_id);
  together.set_count(50);
  together.set_min_support(1);
  v1::BoughtTogetherResponse pairs;
  ASSERT_TRUE(rec->BoughtTogether(Ctx().get(), together, &pairs).ok());
  ASSERT_GT(pairs.items_size(), 0);
  // The item most often bought with item 5, also among the popular ones.
  const std::string gone = pairs.items(0).item_id();
  v1::DeleteItemRequest del;
  del.set_item_id(gone);
  v1::DeleteItemResponse deleted;
  ASSERT_TRUE(catalog->DeleteItem(Ctx().get(), del, &deleted).ok());
  ASSERT_TRUE(deleted.deleted());
  const auto never_served = [&](const char* when) {
    WaitCaughtUp(*admin);
    for (int u = 0; u < 60; ++u) {
      v1::RecommendRequest req;
      req.set_user_id(shop_.users[u].user_id);
      req.set_count(50);
      const std::vector<std::string> ids = Ids(Ask(*rec, req));
      EXPECT_EQ(std::find(ids.begin(), ids.end(), gone), ids.end()) << when << ": user " << u;
    }
    v1::RecommendRequest popular;  // an unknown shopper: the popularity fallback
    popular.set_user_id("nobody-yet");
    popular.set_count(50);
    const std::vector<std::string> top = Ids(Ask(*rec, popular));
    EXPECT_EQ(std::find(top.begin(), top.end(), gone), top.end()) << when;
    for (int i = 0; i < 20; ++i) {
      v1::SimilarItemsRequest similar;
      similar.set_item_id(shop_.items[i].item.item_id);
      similar.set_count(50);
      v1::RecommendResponse neighbours;
      if (!rec->SimilarItems(Ctx().get(), similar, &neighbours).ok()) continue;  // `gone` itself
      const std::vector<std::string> ids = Ids(neighbours);
      EXPECT_EQ(std::find(ids.begin(), ids.end(), gone), ids.end()) << when << ": item " << i;
    }
    v1::BoughtTogetherResponse now;
    ASSERT_TRUE(rec->BoughtTogether(Ctx().get(), together, &now).ok());
    for (const auto& a : now.items()) EXPECT_NE(a.item_id(), gone) << when;
    v1::SimilarItemsRequest of_gone;
    of_gone.set_item_id(gone);
    of_gone.set_count(5);
    v1::RecommendResponse none;
    EXPECT_EQ(rec->SimilarItems(Ctx().get(), of_gone, &none).error_code(),
              grpc::StatusCode::NOT_FOUND)
        << when;
  };
  never_served("after the delete");
  server->Kill();
  server = std::make_unique<ServerProcess>(dir_.path(), kFlags);
  rec = v1::Recommender::NewStub(server->channel());
  catalog = v1::Catalog::NewStub(server->channel());
  admin = v1::Admin::NewStub(server->channel());
  never_served("after SIGKILL and restart");

  v1::UpsertItemsRequest back;
  for (const core::DemoItem& it : shop_.items) {
    if (it.item.item_id == gone) *back.add_items() = clients::ToProto(it.item);
  }
  v1::UpsertItemsResponse upserted;
  ASSERT_TRUE(catalog->UpsertItems(Ctx().get(), back, &upserted).ok());
  WaitCaughtUp(*admin);
  v1::BoughtTogetherResponse again;
  ASSERT_TRUE(rec->BoughtTogether(Ctx().get(), together, &again).ok());
  ASSERT_GT(again.items_size(), 0);
  EXPECT_EQ(again.items(0).item_id(), gone);
}

TEST_F(RecommendTest, BadRequestsNameTheField) {
  ServerProcess server(dir_.path(), kFlags);
  auto rec = v1::Recommender::NewStub(server.channel());
  v1::Item item;
  item.set_item_id("i1");
  item.add_category_path("shoes");
  item.set_price(10);
  ASSERT_TRUE(clients::UpsertItems(*server.channel(), {item}, 100).ok());
  auto admin = v1::Admin::NewStub(server.channel());
  WaitCaughtUp(*admin);

  v1::RecommendRequest ok;
  ok.set_user_id("u1");
  ok.set_count(10);
  struct Case {
    v1::RecommendRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({ok, "count"});
  cases.back().req.set_count(0);
  cases.push_back({ok, "count"});
  cases.back().req.set_count(1001);
  cases.push_back({ok, "candidate_item_ids"});
  for (int i = 0; i < 1001; ++i) cases.back().req.add_candidate_item_ids("i1");
  cases.push_back({ok, "filter.categories[1]"});
  cases.back().req.mutable_filter()->add_categories("shoes");
  cases.back().req.mutable_filter()->add_categories("hats");
  cases.push_back({ok, "user_id"});
  cases.back().req.clear_user_id();
  cases.push_back({ok, "filter.max_price"});
  cases.back().req.mutable_filter()->set_min_price(20);
  cases.back().req.mutable_filter()->set_max_price(10);
  cases.push_back({ok, "context_item_ids[0]"});
  cases.back().req.add_context_item_ids(std::string(200, 'x'));
  for (const Case& c : cases) {
    grpc::Status s;
    Ask(*rec, c.req, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message().rfind(c.field, 0), 0u) << s.error_message();
  }
  // A valid request for a stranger in an almost empty shop still answers.
  grpc::Status s;
  Ask(*rec, ok, &s);
  EXPECT_TRUE(s.ok()) << s.error_message();

  v1::SimilarItemsRequest similar;
  similar.set_item_id("never-seen");
  similar.set_count(3);
  v1::RecommendResponse none;
  EXPECT_EQ(rec->SimilarItems(Ctx().get(), similar, &none).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::BoughtTogetherRequest together;
  together.set_item_id("i1");
  v1::BoughtTogetherResponse pairs;
  EXPECT_EQ(rec->BoughtTogether(Ctx().get(), together, &pairs).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace mercato::testing
