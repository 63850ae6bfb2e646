#include "core/learner.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/background_fit.h"
#include "models/recommend/recommend_model.h"
#include "testing/activity_model.h"
#include "testing/demo_shop.h"
#include "testing/fake_event_log.h"

namespace mercato::core {
namespace {

std::vector<std::unique_ptr<Model>> Models() {
  std::vector<std::unique_ptr<Model>> m;
  m.push_back(std::make_unique<ActivityModel>());
  return m;
}

std::vector<Event> ShopEvents() {
  DemoShopOptions o;
  o.users = 200;
  o.items = 50;
  o.days = 20;
  return GenerateDemoShop(o).events;
}

std::string ActivityState(const Learner& learner) {
  return learner.snapshot()->models.at(0).view->Encode();
}

TEST(LearnerTest, AppliesTheLogInOrderAndPublishes) {
  FakeEventLog log;
  FakeClock clock(1000);
  Learner learner(LearnerOptions(), Models(), &log, &clock);
  const std::vector<Event> events = ShopEvents();
  log.Append(events);
  ASSERT_TRUE(learner.CatchUp().ok());
  auto snap = learner.snapshot();
  EXPECT_EQ(snap->applied_sequence, events.size());
  auto view = snap->View<ActivityView>(kActivityModelName);
  ASSERT_NE(view, nullptr);
  double total = 0;
  for (double t : view->totals()) total += t;
  EXPECT_EQ(total, events.size());
  int views_of_user0 = 0;
  for (const Event& e : events) views_of_user0 += e.user_id == "user0" && e.type == EventType::kView;
  EXPECT_EQ((*view->UserCounts("user0"))[static_cast<int>(EventType::kView)], views_of_user0);
  for (const PublishedModel& m : snap->models) {  // the learner's cost per model
    EXPECT_EQ(m.applied_events, events.size()) << m.name;
    EXPECT_GT(m.apply_ns, 0u) << m.name;
  }
}

TEST(LearnerTest, ReadersKeepTheirSnapshotWhileTheLearnerRuns) {
  FakeEventLog log;
  LearnerOptions options;
  options.publish_interval = absl::Milliseconds(1);
  Learner learner(options, Models(), &log, Clock::Real());
  ASSERT_TRUE(learner.CatchUp().ok());
  learner.Start();
  std::shared_ptr<const Snapshot> held = learner.snapshot();
  const std::string held_state = held->models[0].view->Encode();
  log.Append(ShopEvents());
  for (int i = 0; i < 2000 && learner.snapshot()->applied_sequence < log.LastSequence(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(learner.snapshot()->applied_sequence, log.LastSequence());
  EXPECT_GT(learner.snapshot()->version, held->version);
  EXPECT_EQ(held->models[0].view->Encode(), held_state) << "a published snapshot never changes";
  learner.Stop();
}

TEST(LearnerTest, SameLogGivesTheSameModelBitForBit) {
  const std::vector<Event> events = ShopEvents();
  std::string states[2];
  for (std::string& state : states) {
    FakeEventLog log;
    FakeClock clock(0);
    LearnerOptions options;
    options.read_batch = 97;  // batching must not matter
    Learner learner(options, Models(), &log, &clock);
    log.Append(events);
    ASSERT_TRUE(learner.CatchUp().ok());
    state = ActivityState(learner);
  }
  EXPECT_EQ(states[0], states[1]);
}

TEST(LearnerTest, CheckpointPlusTailEqualsFullReplay) {
  const std::vector<Event> events = ShopEvents();
  const size_t half = events.size() / 2;
  FakeEventLog log;
  FakeClock clock(0);
  MemoryCheckpointSink sink;
  Learner first(LearnerOptions(), Models(), &log, &clock);
  log.Append({events.begin(), events.begin() + half});
  ASSERT_TRUE(first.CatchUp().ok());
  Checkpointer checkpointer(&first, &sink, &clock, absl::Hours(1));
  ASSERT_TRUE(checkpointer.CheckpointNow().ok());
  EXPECT_EQ(sink.sequence(), half);
  log.Append({events.begin() + half, events.end()});
  ASSERT_TRUE(first.CatchUp().ok());

  Learner restored(LearnerOptions(), Models(), &log, &clock);
  ASSERT_TRUE(restored.Restore(sink.sequence(), sink.states()).ok());
  EXPECT_EQ(restored.snapshot()->applied_sequence, half);
  ASSERT_TRUE(restored.CatchUp().ok());
  EXPECT_EQ(ActivityState(restored), ActivityState(first));
}

// A fit due for adoption that has not finished holds back only its own
// model's events: the other models go on, the model serves the held events
// folded in meanwhile, and checkpoints write the last settled snapshot,
// from before the fit started. Stopping abandons the fit at once.
TEST(LearnerTest, AFitDueForAdoptionHoldsBackOnlyItsModel) {
  RecommendOptions endless;
  endless.ials.epochs = 1000000;
  endless.retrain_every = 1000;
  endless.adopt_after_events = 200;
  std::vector<std::unique_ptr<Model>> models = Models();
  models.push_back(std::make_unique<RecommendModel>(endless));
  FakeEventLog log;
  FakeClock clock(1000);
  LearnerOptions options;
  options.publish_every_events = 100;
  Learner learner(options, std::move(models), &log, &clock);
  const std::vector<Event> events = ShopEvents();
  log.Append(events);
  ASSERT_TRUE(learner.CatchUp().ok());
  const auto snap = learner.snapshot();
  const PublishedModel& activity = snap->models[0];
  const PublishedModel& recommend = snap->models[1];
  EXPECT_EQ(activity.applied_sequence, events.size());
  EXPECT_EQ(activity.waiting_events, 0u);
  const std::optional<RunningRetrain> running = recommend.view->Running();
  ASSERT_TRUE(running);
  EXPECT_EQ(recommend.applied_sequence, running->started_sequence + endless.adopt_after_events - 1);
  EXPECT_EQ(recommend.waiting_events, events.size() - recommend.applied_sequence);
  EXPECT_EQ(snap->served_sequence(), recommend.applied_sequence);
  // A shopper first seen in the held-back events is served already.
  std::string late_user;
  for (size_t i = events.size(); i-- > recommend.applied_sequence;) {
    bool seen_before = false;
    for (size_t j = 0; j < recommend.applied_sequence && !seen_before; ++j) {
      seen_before = events[j].user_id == events[i].user_id;
    }
    if (!seen_before && !events[i].user_id.empty()) late_user = events[i].user_id;
  }
  ASSERT_FALSE(late_user.empty());
  EXPECT_NE(std::dynamic_pointer_cast<const RecommendView>(recommend.view)->UserFactors(late_user),
            nullptr);
  EXPECT_LE(learner.settled_snapshot()->applied_sequence, running->started_sequence);
  const auto start = std::chrono::steady_clock::now();
  learner.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// Held-back events are bounded: past max_waiting_events the learner stops
// reading the log until the fit is done, every model lagging with it, and
// then applies everything.
TEST(LearnerTest, HeldBackEventsStayBoundedAndAllAreAppliedOnceTheFitsEnd) {
  RecommendOptions slow;
  slow.ials.epochs = 1;
  slow.retrain_every = 1000;
  slow.adopt_after_events = 50;
  std::vector<std::unique_ptr<Model>> models = Models();
  models.push_back(std::make_unique<RecommendModel>(slow));
  FakeEventLog log;
  FakeClock clock(1000);
  LearnerOptions options;
  options.read_batch = 100;
  options.max_waiting_events = 300;
  options.publish_every_events = 100;
  options.publish_interval = absl::Milliseconds(1);
  Learner learner(options, std::move(models), &log, &clock);
  const std::vector<Event> events = ShopEvents();
  SetFitDelayForTesting(absl::Milliseconds(200));
  learner.Start();
  log.Append(events);
  uint64_t most_waiting = 0;
  bool others_waited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const auto snap = learner.snapshot();
    const PublishedModel& activity = snap->models[0];
    const PublishedModel& recommend = snap->models[1];
    most_waiting = std::max(most_waiting, recommend.waiting_events);
    others_waited |= recommend.waiting_events >= 300 && activity.applied_sequence < events.size();
    if (snap->served_sequence() == events.size() && recommend.waiting_events == 0) break;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "never caught up";
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  SetFitDelayForTesting(absl::ZeroDuration());
  learner.Stop();
  EXPECT_GE(most_waiting, 300u);
  EXPECT_LE(most_waiting, 300u + options.read_batch);
  EXPECT_TRUE(others_waited);
}

TEST(LearnerTest, CorruptCheckpointIsRefusedAndNamesTheModel) {
  FakeEventLog log;
  FakeClock clock(0);
  Learner learner(LearnerOptions(), Models(), &log, &clock);
  absl::Status s = learner.Restore(5, {{"activity", "\x01garbage"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("activity"), std::string::npos);
}

TEST(CheckpointerTest, WritesOnScheduleOnlyWhenChanged) {
  FakeEventLog log;
  MemoryCheckpointSink sink;
  LearnerOptions options;
  options.publish_interval = absl::Milliseconds(1);
  Learner learner(options, Models(), &log, Clock::Real());
  ASSERT_TRUE(learner.CatchUp().ok());
  learner.Start();
  Checkpointer checkpointer(&learner, &sink, Clock::Real(), absl::Milliseconds(5));
  checkpointer.Start();
  log.Append(ShopEvents());
  for (int i = 0; i < 3000 && sink.sequence() < log.LastSequence(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(sink.sequence(), log.LastSequence());
  const int writes = sink.writes();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(sink.writes(), writes) << "no new checkpoint without new events";
  checkpointer.Stop();
  learner.Stop();
}

// A checkpoint that takes 40 ms is not written more often than every 400 ms,
// whatever the interval asks for.
TEST(CheckpointerTest, SlowCheckpointsAreSpacedOut) {
  FakeEventLog log;
  MemoryCheckpointSink sink;
  sink.set_write_delay(absl::Milliseconds(40));
  LearnerOptions options;
  options.publish_interval = absl::Milliseconds(1);
  Learner learner(options, Models(), &log, Clock::Real());
  ASSERT_TRUE(learner.CatchUp().ok());
  learner.Start();
  Checkpointer checkpointer(&learner, &sink, Clock::Real(), absl::Milliseconds(1));
  checkpointer.Start();
  const std::vector<Event> events = ShopEvents();
  // Something new to write all along.
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000);
       ++i) {
    log.Append({events[i % events.size()]});
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  checkpointer.Stop();
  learner.Stop();
  // 1 s / (40 ms + 400 ms) rounds up to 3; back to back it would be about 25.
  EXPECT_GE(sink.writes(), 1);
  EXPECT_LE(sink.writes(), 4);
}

TEST(CheckpointerTest, RestoredStateIsNotWrittenAgainUntilItChanges) {
  const std::vector<Event> events = ShopEvents();
  FakeEventLog log;
  FakeClock clock(0);
  MemoryCheckpointSink sink;
  log.Append({events.begin(), events.end() - 1});
  {
    Learner first(LearnerOptions(), Models(), &log, &clock);
    ASSERT_TRUE(first.CatchUp().ok());
    ASSERT_TRUE(Checkpointer(&first, &sink, &clock, absl::Hours(1)).CheckpointNow().ok());
  }
  Learner restored(LearnerOptions(), Models(), &log, &clock);
  ASSERT_TRUE(restored.Restore(sink.sequence(), sink.states()).ok());
  ASSERT_TRUE(restored.CatchUp().ok());  // no tail: the snapshot stays
  Checkpointer checkpointer(&restored, &sink, &clock, absl::Hours(1));
  CheckpointInfo loaded;
  loaded.sequence = sink.sequence();
  loaded.snapshot_version = restored.snapshot()->version;
  checkpointer.SetLoaded(loaded);
  const int writes = sink.writes();
  ASSERT_TRUE(restored.CatchUp().ok());  // as at shutdown, with nothing new
  ASSERT_TRUE(checkpointer.CheckpointIfChanged().ok());
  EXPECT_EQ(sink.writes(), writes);

  log.Append({events.back()});
  ASSERT_TRUE(restored.CatchUp().ok());
  absl::StatusOr<CheckpointInfo> info = checkpointer.CheckpointIfChanged();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(sink.writes(), writes + 1);
  EXPECT_EQ(info->sequence, log.LastSequence());
}

}  // namespace
}  // namespace mercato::core
