// Every registered model is a function of the log: the same log gives the
// same encoded state, bit for bit, whether background fits finish early or
// late, however often the learner publishes, and across a restart from a
// checkpoint in the middle (with fits running or not). The test iterates
// over the registry, so a new model is covered without editing it.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/background_fit.h"
#include "core/learner.h"
#include "core/recommendation_ref.h"
#include "models/recommend/recommend_model.h"
#include "models/segments/segment_model.h"
#include "server/erasure.h"
#include "server/model_registry.h"
#include "server/runtime.h"
#include "testing/demo_shop.h"
#include "testing/fake_event_log.h"

namespace mercato::server {
namespace {

using core::Event;
using core::EventType;

// Options under which the models with fits fit often on a small shop (the
// recommendation model's HNSW index too, from 20 items on, and its
// hyperparameter search); fits are adopted at their FIT_DONE records. Every
// other model runs with its defaults.
ModuleOptions Options() {
  ModuleOptions o;
  core::RecommendOptions& rec = o.Mutable<core::RecommendOptions>();
  rec.ials.dim = 8;
  rec.ials.epochs = 2;
  rec.retrain_every = 4000;
  rec.adopt_after_events = 1000000000;
  rec.hnsw_min_items = 20;
  rec.tuning.trials = 3;
  core::SegmentOptions& seg = o.Mutable<core::SegmentOptions>();
  seg.min_customers = 30;
  seg.refit_every_purchases = 600;
  seg.adopt_after_events = 1000000000;
  seg.iterations = 30;
  seg.value_fit_evaluations = 400;
  return o;
}

// The demo shop's log as the server writes it: catalogue upserts, shopper
// events, scored orders (some logged late, so that log order and time order
// differ), labels, erasures, catalogue deletions and retrain requests.
std::vector<Event> ShopLog() {
  core::DemoShopOptions d;
  d.users = 300;
  d.items = 60;
  d.days = 45;
  const core::DemoShop shop = core::GenerateDemoShop(d);
  std::vector<Event> log;
  int n = 0;
  for (const Event& e : core::DemoShopLog(shop, /*late_every=*/5)) {
    log.push_back(e);
    if (e.type == EventType::kItemUpdate || e.type == EventType::kOrderScored) continue;
    ++n;
    if (n % 97 == 0) {  // followed a recommendation served a minute before
      log.back().recommendation_id =
          core::FormatRecommendationId({"default", 1, e.timestamp_ms - 60000, uint64_t(n)});
    }
    Event server;
    server.timestamp_ms = 1;  // the server's own clock, never shop time
    if (n % 1499 == 0) {
      server.type = EventType::kRecommendationsServed;
      server.payload = core::EncodeServed({{"default", 1, 40}, {"popular", 4, 3}});
    } else if (n % 1777 == 0) {
      server.type = EventType::kUserDelete;
      server.user_id = e.user_id;
    } else if (n % 2909 == 0) {
      server.type = EventType::kRetrain;
    } else if (n % 4001 == 0) {
      server.type = EventType::kItemDelete;
      server.item_id = shop.items[n % shop.items.size()].item.item_id;
    } else {
      continue;
    }
    server.event_id = absl::StrCat("server/", n);
    log.push_back(server);
  }
  return log;
}

struct Outcome {
  std::map<std::string, std::string> states;  // model name -> Encode()
  std::map<std::string, uint64_t> fits;       // fits adopted, where counted
  std::vector<std::string> searched;          // models a hyperparameter search tuned
  bool restarted_with_a_fit_running = false;
  uint64_t checkpoint_sequence = 0;  // of the checkpoint restarted from
};

core::LearnerOptions Publishing(uint64_t every_events) {
  core::LearnerOptions o;
  o.read_batch = 97;
  o.publish_every_events = every_events;
  o.publish_interval = absl::Milliseconds(1);
  return o;
}

std::unique_ptr<core::Learner> MakeLearner(const core::FakeEventLog& log, uint64_t publish_every) {
  RegisteredModels models = *MakeModels(Options());
  return std::make_unique<core::Learner>(Publishing(publish_every), std::move(models.models), &log,
                                         core::Clock::Real(), std::move(models.reads));
}

// Waits until the running learner's models have applied the whole log and
// no fit runs, then stops it.
void Settle(core::Learner& learner, const core::FakeEventLog& log) {
  for (int i = 0; i < 3000; ++i) {
    const auto snap = learner.snapshot();
    if (snap->settled && snap->applied_sequence == log.LastSequence()) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  learner.Stop();
}

Outcome StatesOf(const core::Snapshot& snap) {
  Outcome out;
  for (const core::PublishedModel& m : snap.models) {
    out.states[m.name] = m.view->Encode();
    if (!m.view->Trials().empty()) out.searched.push_back(m.name);
    for (const auto& [name, value] : m.view->Counts()) {
      if (name == "retrains" || name == "fits") out.fits[m.name] = value;
    }
  }
  return out;
}

// The server's way: `events` arrive in chunks while the learner runs, and
// the learner appends a FIT_DONE record to the same log as each fit
// finishes. Returns the states; `log` holds everything written.
Outcome Live(const std::vector<Event>& events, core::FakeEventLog& log) {
  std::unique_ptr<core::Learner> learner = MakeLearner(log, 500);
  learner->SetRecordSink([&log](Event e) { log.Append({std::move(e)}); });
  learner->Start();
  for (size_t at = 0; at < events.size(); at += 100) {
    log.Append({events.begin() + at, events.begin() + std::min(events.size(), at + 100)});
    absl::SleepFor(absl::Milliseconds(5));
  }
  Settle(*learner, log);
  EXPECT_TRUE(learner->snapshot()->settled);
  return StatesOf(*learner->snapshot());
}

// The written `log` read again by a fresh learner, with fits slowed by up
// to `max_fit_delay`; with `restart_at`, a checkpoint is taken there and
// another fresh learner goes on from it.
Outcome Replay(const std::vector<Event>& log, absl::Duration max_fit_delay, uint64_t publish_every,
               size_t restart_at = 0) {
  core::SetFitDelayForTesting(max_fit_delay);
  core::FakeEventLog source;
  Outcome restart;
  std::unique_ptr<core::Learner> learner = MakeLearner(source, publish_every);
  if (restart_at > 0) {
    source.Append({log.begin(), log.begin() + restart_at});
    EXPECT_TRUE(learner->CatchUp().ok());
    for (const core::PublishedModel& m : learner->snapshot()->models) {
      restart.restarted_with_a_fit_running |= m.view->Running().has_value() || m.waiting_events > 0;
    }
    // Once every fit the log has adopted so far is adopted here too; the
    // settled snapshot is then at `restart_at` unless a fit is in flight.
    learner->Start();
    for (int i = 0; i < 1000 && learner->settled_snapshot()->applied_sequence < restart_at &&
                    learner->snapshot()->served_sequence() < restart_at;
         ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    for (int i = 0; i < 100 && learner->settled_snapshot()->applied_sequence < restart_at; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    core::MemoryCheckpointSink sink;
    core::Checkpointer checkpointer(learner.get(), &sink, core::Clock::Real(), absl::Hours(1));
    EXPECT_TRUE(checkpointer.CheckpointNow().ok());
    learner->Stop();  // as kill -9 would: the running fits are lost
    learner = MakeLearner(source, publish_every);
    EXPECT_TRUE(learner->Restore(sink.sequence(), sink.states()).ok());
    restart.checkpoint_sequence = sink.sequence();
    source.Append({log.begin() + restart_at, log.end()});
  } else {
    source.Append(log);
  }
  learner->Start();
  Settle(*learner, source);
  core::SetFitDelayForTesting(absl::ZeroDuration());
  Outcome out = StatesOf(*learner->snapshot());
  out.restarted_with_a_fit_running = restart.restarted_with_a_fit_running;
  out.checkpoint_sequence = restart.checkpoint_sequence;
  return out;
}

void ExpectSameStates(const Outcome& expected, const Outcome& got, const std::string& how) {
  ASSERT_EQ(expected.states.size(), got.states.size());
  for (const auto& [name, state] : expected.states) {
    EXPECT_TRUE(got.states.at(name) == state)
        << name << " differs " << how << " (" << state.size() << " vs "
        << got.states.at(name).size() << " bytes)";
  }
}

TEST(DeterminismTest, EveryRegisteredModelIsAFunctionOfTheLog) {
  core::FakeEventLog written;
  const Outcome reference = Live(ShopLog(), written);
  std::vector<Event> log;
  ASSERT_TRUE(written.Read(1, written.LastSequence(), &log).ok());
  // The rule is tested, not assumed: every model is registered, and every
  // model with fits fitted several times on the way.
  EXPECT_EQ(reference.states.size(), ModelModules().size());
  EXPECT_FALSE(reference.fits.empty());
  for (const auto& [name, fits] : reference.fits) EXPECT_GE(fits, 2u) << name;
  EXPECT_EQ(reference.searched, std::vector<std::string>{core::kRecommendModelName});

  ExpectSameStates(reference, Replay(log, absl::ZeroDuration(), 100000), "on a replay");
  ExpectSameStates(reference, Replay(log, absl::Milliseconds(40), 50), "with slow fits");
  // Restart points: one where no fit is in flight (between a FIT_DONE and
  // the next fit's start, for every model), where the checkpoint is at the
  // restart itself, and two in the middle of a fit, where it is earlier.
  std::vector<std::pair<uint64_t, uint64_t>> in_flight;  // [start, FIT_DONE]
  for (const Event& e : log) {
    if (e.type == EventType::kFitDone) in_flight.emplace_back(e.value, e.sequence);
  }
  const auto busy = [&](uint64_t at) {
    for (const auto& [start, done] : in_flight) {
      if (start <= at && at < done) return true;
    }
    return false;
  };
  std::mt19937_64 rng(7);
  std::vector<size_t> quiet_points, busy_points;
  for (size_t at = log.size() / 5; at < log.size() - 100; ++at) {
    (busy(at) ? busy_points : quiet_points).push_back(at);
  }
  ASSERT_FALSE(quiet_points.empty());
  ASSERT_FALSE(busy_points.empty());
  const size_t quiet = quiet_points[rng() % quiet_points.size()];
  const Outcome from_quiet = Replay(log, absl::Milliseconds(20), 300, quiet);
  EXPECT_EQ(from_quiet.checkpoint_sequence, quiet) << "the checkpoint is at the restart";
  ExpectSameStates(reference, from_quiet, absl::StrCat("after a restart at ", quiet));
  for (int k = 0; k < 2; ++k) {
    const size_t at = busy_points[rng() % busy_points.size()];
    const Outcome restarted = Replay(log, absl::Milliseconds(20), 300, at);
    EXPECT_TRUE(restarted.restarted_with_a_fit_running) << at;
    EXPECT_LT(restarted.checkpoint_sequence, at);
    ExpectSameStates(reference, restarted, absl::StrCat("after a restart at ", at, " during a fit"));
  }
}

// An erasure completed (server/erasure.h) rewrites the log before its
// ERASE_KEYS record; the rewritten log gives the state the original one
// gave, with fits quick or slow (slow ones make the recommendation model
// preview the erasures before it applies them).
TEST(DeterminismTest, ALogRewrittenByErasuresGivesTheSameState) {
  core::FakeEventLog written;
  Live(ShopLog(), written);
  std::vector<Event> log;
  ASSERT_TRUE(written.Read(1, written.LastSequence(), &log).ok());
  // Each erasure's ERASE_KEYS record, as the eraser appends it.
  std::vector<ErasurePlan> plans;
  for (const Event& e : std::vector<Event>(log)) {
    if (e.type != EventType::kUserDelete) continue;
    core::FakeEventLog source;
    source.Append(log);
    absl::StatusOr<ErasurePlan> plan = PlanErasure(source, e.sequence);
    ASSERT_TRUE(plan.ok()) << plan.status();
    log.push_back(EraseKeysEvent(*plan));
    log.back().sequence = log.size();
    plans.push_back(*std::move(plan));
  }
  ASSERT_GE(plans.size(), 2u);
  size_t keys = 0;
  for (const ErasurePlan& p : plans) keys += p.keys.size();
  EXPECT_GT(keys, plans.size()) << "the customers' cards and devices were found";
  const Outcome reference = Replay(log, absl::ZeroDuration(), 100000);

  std::vector<Event> rewritten = log;
  for (size_t i = 0; i < plans.size(); ++i) {
    core::FakeEventLog source;
    source.Append(rewritten);
    uint64_t keys_at = 0;
    for (const Event& e : rewritten) {
      if (e.type == EventType::kEraseKeys &&
          e.value == static_cast<double>(plans[i].delete_sequence)) {
        keys_at = e.sequence;
      }
    }
    absl::StatusOr<ErasureRewrite> r = RewriteForErasure(source, plans[i], keys_at);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->events.empty());
    for (Event& e : r->events) rewritten[e.sequence - 1] = std::move(e);
  }
  for (const ErasurePlan& p : plans) {
    for (const Event& e : rewritten) {
      if (e.sequence <= p.delete_sequence) {
        EXPECT_NE(e.user_id, p.user_id) << "at " << e.sequence;
      }
      for (const std::string& key : p.keys) {
        EXPECT_NE(e.session_id, key);
        EXPECT_EQ(e.payload.find(key), std::string::npos) << "at " << e.sequence;
      }
    }
  }
  ExpectSameStates(reference, Replay(rewritten, absl::ZeroDuration(), 100000),
                   "on the rewritten log");
  ExpectSameStates(reference, Replay(rewritten, absl::Milliseconds(40), 50),
                   "on the rewritten log with slow fits");
  ExpectSameStates(reference, Replay(log, absl::Milliseconds(40), 50),
                   "with slow fits, before the rewrite");
}

}  // namespace
}  // namespace mercato::server
