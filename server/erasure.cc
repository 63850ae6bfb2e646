#include "server/erasure.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/clock.h"
#include "core/log.h"
#include "server/gate.h"
#include "server/model_registry.h"

namespace mercato::server {
namespace {

constexpr size_t kReadChunk = 10000;

// Calls `visit` on each identifier `e` carries besides its user id: the
// session id and what the models' own records carry in their payload.
void VisitIdentifiers(core::Event& e, const std::function<void(std::string&)>& visit) {
  if (!e.session_id.empty()) visit(e.session_id);
  for (const ModelModule& m : ModelModules()) {
    if (m.identifiers) m.identifiers(e, visit);
  }
}

// Calls `fn` on every event of `log` in [from, to], in order.
absl::Status ForEach(const core::EventSource& log, uint64_t from, uint64_t to,
                     const std::function<void(core::Event&)>& fn) {
  std::vector<core::Event> chunk;
  for (uint64_t next = from; next <= to;) {
    chunk.clear();
    if (absl::Status s = log.Read(next, kReadChunk, &chunk); !s.ok()) return s;
    if (chunk.empty()) break;
    for (core::Event& e : chunk) {
      if (e.sequence > to) return absl::OkStatus();
      fn(e);
    }
    next = chunk.back().sequence + 1;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ErasurePlan> PlanErasure(const core::EventSource& log, uint64_t delete_sequence) {
  std::vector<core::Event> at;
  if (absl::Status s = log.Read(delete_sequence, 1, &at); !s.ok()) return s;
  if (at.empty() || at[0].sequence != delete_sequence ||
      at[0].type != core::EventType::kUserDelete) {
    return absl::DataLossError(
        absl::StrCat("erasure: no USER_DELETE at sequence ", delete_sequence));
  }
  ErasurePlan plan;
  plan.delete_sequence = delete_sequence;
  plan.user_id = at[0].user_id;
  absl::flat_hash_set<std::string> seen;
  absl::Status s = ForEach(log, 1, delete_sequence - 1, [&](core::Event& e) {
    if (e.user_id != plan.user_id) return;
    VisitIdentifiers(e, [&](std::string& id) {
      if (seen.insert(id).second) plan.keys.push_back(id);
    });
  });
  if (!s.ok()) return s;
  return plan;
}

core::Event EraseKeysEvent(const ErasurePlan& plan) {
  core::Event e;
  e.type = core::EventType::kEraseKeys;
  e.value = static_cast<double>(plan.delete_sequence);
  e.payload = core::EncodeErasedKeys(plan.keys);
  e.timestamp_ms = core::Clock::Real()->NowMs();
  // Appended once, however often an interrupted erasure resumes.
  e.event_id = absl::StrCat("erase-keys/", plan.delete_sequence);
  return e;
}

absl::StatusOr<ErasureRewrite> RewriteForErasure(const core::EventSource& log,
                                                 const ErasurePlan& plan, uint64_t keys_sequence) {
  const uint64_t d = plan.delete_sequence;
  const std::string erased = core::ErasedName(d);
  absl::flat_hash_map<std::string, std::string> placeholders;
  std::vector<std::string> named;
  for (size_t i = 0; i < plan.keys.size(); ++i) {
    placeholders.emplace(plan.keys[i], core::ErasedName(d, i + 1));
    named.push_back(core::ErasedName(d, i + 1));
  }
  ErasureRewrite out;
  absl::Status s = ForEach(log, 1, keys_sequence, [&](core::Event& e) {
    bool changed = false;
    if (e.sequence <= d && e.user_id == plan.user_id && !plan.user_id.empty()) {
      e.user_id = erased;
      changed = true;
      if (e.sequence < d && !e.event_id.empty()) {
        out.dropped_event_ids.push_back(std::move(e.event_id));
        e.event_id.clear();
      }
    }
    VisitIdentifiers(e, [&](std::string& id) {
      if (auto it = placeholders.find(id); it != placeholders.end()) {
        id = it->second;
        changed = true;
      }
    });
    if (e.sequence == keys_sequence && e.type == core::EventType::kEraseKeys) {
      e.payload = core::EncodeErasedKeys(named);
      changed = true;
    }
    if (changed) out.events.push_back(std::move(e));
  });
  if (!s.ok()) return s;
  return out;
}

Eraser::Eraser(storage::Store* store, storage::LogWriter* writer, core::Learner* learner,
               core::Checkpointer* checkpointer)
    : store_(store), writer_(writer), learner_(learner), checkpointer_(checkpointer) {}

Eraser::~Eraser() { Stop(); }

void Eraser::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Eraser::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cancel_compaction_ = true;
  if (thread_.joinable()) thread_.join();
}

void Eraser::Notify() {
  absl::MutexLock lock(&mu_);
  notified_ = true;
}

bool Eraser::WaitFor(const std::function<bool()>& done) {
  for (;;) {
    if (done()) return true;
    absl::MutexLock lock(&mu_);
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Milliseconds(50))) return false;
  }
}

void Eraser::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || notified_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), absl::Seconds(1));
      if (stop_) return;
      notified_ = false;
    }
    absl::StatusOr<std::vector<uint64_t>> pending = store_->PendingErasures();
    if (!pending.ok()) {
      MERCATO_LOG(kError) << "erasure: " << pending.status();
      continue;
    }
    for (uint64_t d : *pending) {
      absl::StatusOr<bool> done = Complete(d);
      if (!done.ok()) MERCATO_LOG(kError) << "erasure at sequence " << d << ": " << done.status();
      if (!done.ok() || !*done) break;  // tried again at the next wake-up
    }
    if (store_->CompactionDue()) {
      absl::StatusOr<double> seconds = store_->CompactEverything(&cancel_compaction_);
      if (seconds.ok()) {
        Audit("compaction",
              absl::StrCat("every file compacted, none keeps erased bytes, in ", *seconds, " s"));
        if (absl::Status s = store_->ClearCompactionDue(); !s.ok()) {
          MERCATO_LOG(kError) << "erasure: " << s;
        }
      } else if (!cancel_compaction_) {
        MERCATO_LOG(kError) << "erasure: compaction: " << seconds.status();
      }
    }
  }
}

void Eraser::Audit(std::string what, std::string outcome) {
  storage::AuditRecord record;
  record.who = "eraser";
  record.method = "erasure";
  record.request = std::move(what);
  record.message = std::move(outcome);
  KeepAudit(*store_, std::move(record));
}

absl::StatusOr<bool> Eraser::Complete(uint64_t d) {
  const absl::Time start = absl::Now();
  const auto served = [this](uint64_t at) {
    return [this, at] { return learner_->snapshot()->served_sequence() >= at; };
  };
  if (!WaitFor(served(d))) return false;
  absl::StatusOr<ErasurePlan> plan = PlanErasure(*store_, d);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<storage::AppendResult> appended = writer_->Append({EraseKeysEvent(*plan)});
  if (!appended.ok()) return appended.status();
  uint64_t e = appended->sequences[0];
  if (e == 0) {  // appended before an interruption, or by another replica: find it
    if (!WaitFor([&] { return store_->LastSequence() >= appended->last_sequence; })) return false;
    absl::Status s = ForEach(*store_, d + 1, store_->LastSequence(), [&](core::Event& x) {
      if (e == 0 && x.type == core::EventType::kEraseKeys && x.value == static_cast<double>(d)) {
        e = x.sequence;
      }
    });
    if (!s.ok()) return s;
    if (e == 0)
      return absl::DataLossError("its ERASE_KEYS record is acknowledged but not in the log");
  }
  if (!WaitFor(served(e))) return false;
  // No restart may replay the log before E once it is rewritten. A
  // checkpoint writes the settled snapshot, so one is asked for once that
  // is past E.
  const bool checkpointed = WaitFor([&] {
    if (checkpointer_->last().sequence >= e) return true;
    if (learner_->settled_snapshot()->applied_sequence < e) return false;
    const absl::StatusOr<core::CheckpointInfo> cp = checkpointer_->CheckpointNow();
    return cp.ok() && cp->sequence >= e;
  });
  if (!checkpointed) return false;
  absl::StatusOr<ErasureRewrite> rewrite = RewriteForErasure(*store_, *plan, e);
  if (!rewrite.ok()) return rewrite.status();
  if (absl::Status s = store_->CompleteErasures(rewrite->events, rewrite->dropped_event_ids, {d});
      !s.ok()) {
    return s;
  }
  Audit(absl::StrCat("delete_sequence: ", d, " erase_keys_sequence: ", e),
        absl::StrCat(rewrite->events.size(), " log entries rewritten, ", plan->keys.size(),
                     " identifiers replaced, in ", absl::ToDoubleSeconds(absl::Now() - start),
                     " s; compaction follows"));
  return true;
}

}  // namespace mercato::server
