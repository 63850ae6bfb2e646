#include "core/learner.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/bytes.h"
#include "core/log.h"

namespace mercato::core {
namespace {

constexpr uint8_t kLearnerFormat = 1;

uint64_t ElapsedNs(std::chrono::steady_clock::time_point since) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since).count());
}

std::string EncodeLearnerState(const Snapshot& snap) {
  std::string out;
  ByteWriter w(&out);
  w.U8(kLearnerFormat);
  w.I64(snap.shop_time_ms);
  return out;
}

}  // namespace

Learner::Learner(LearnerOptions options, std::vector<std::unique_ptr<Model>> models,
                 const EventSource* log, const Clock* clock,
                 std::vector<std::vector<size_t>> reads)
    : options_(options),
      models_(std::move(models)),
      reads_(reads.empty() ? std::vector<std::vector<size_t>>(models_.size()) : std::move(reads)),
      readers_(models_.size()),
      log_(log),
      clock_(clock),
      changed_(models_.size(), true),
      waiting_(models_.size()),
      announced_(models_.size()),
      published_(models_.size()) {
  for (size_t i = 0; i < models_.size(); ++i) {
    published_[i].name = std::string(models_[i]->name());
    for (size_t j : reads_[i]) readers_[j].push_back(i);
  }
  Publish();
}

Learner::~Learner() { Stop(); }

absl::Status Learner::Restore(uint64_t sequence, const std::map<std::string, std::string>& states) {
  // Models whose checkpoint is of a format they no longer read (they say so
  // with FAILED_PRECONDITION) are rebuilt from the log up to `sequence`, as
  // is the shop time of a checkpoint written without the learner's entry.
  std::vector<size_t> replay;
  for (size_t i = 0; i < models_.size(); ++i) {
    Model& model = *models_[i];
    auto it = states.find(std::string(model.name()));
    if (it == states.end()) continue;
    absl::Status s = model.Decode(it->second);
    if (absl::IsFailedPrecondition(s)) {
      MERCATO_LOG(kInfo) << "model " << model.name() << ": " << s.message();
      replay.push_back(i);
    } else if (!s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("model ", std::string(model.name()), ": ", s.message()));
    }
  }
  bool scan = true;
  if (auto it = states.find(kLearnerStateName); it != states.end()) {
    ByteReader r(it->second);
    if (r.U8() != kLearnerFormat) return absl::DataLossError("learner: unknown checkpoint format");
    shop_clock_.Reset(r.I64());
    if (!r.status().ok() || !r.done()) return absl::DataLossError("learner: damaged checkpoint");
    scan = false;
  }
  ShopClock replay_clock;
  for (uint64_t from = 1; (scan || !replay.empty()) && from <= sequence;) {
    buffer_.clear();
    if (absl::Status s = log_->Read(from, options_.read_batch, &buffer_); !s.ok()) return s;
    if (buffer_.empty()) break;
    for (Event& event : buffer_) {
      if (event.sequence > sequence) break;
      replay_clock.Stamp(event);
      for (size_t i : replay) Feed(i, event);
      from = event.sequence + 1;
    }
  }
  if (scan) shop_clock_ = replay_clock;
  applied_ = sequence;
  changed_.assign(models_.size(), true);
  Publish();
  return absl::OkStatus();
}

absl::Status Learner::CatchUp(bool drain) {
  while (applied_.load() < log_->LastSequence()) {
    if (Full()) {
      absl::SleepFor(absl::Milliseconds(1));
      Housekeep();
      continue;
    }
    absl::StatusOr<size_t> n = Step();
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    if (Housekeep() || since_publish_ >= options_.publish_every_events) Publish();
  }
  const auto holding = [this] {
    return std::any_of(waiting_.begin(), waiting_.end(),
                       [](const std::deque<Event>& w) { return !w.empty(); });
  };
  while (drain && holding()) {
    absl::SleepFor(absl::Milliseconds(1));
    Housekeep();
  }
  // A snapshot that already serves everything applied stays: its version
  // tells the checkpointer that nothing changed.
  const std::shared_ptr<const Snapshot> served = holder_.Get();
  if (!served || served->applied_sequence != applied_.load() ||
      std::find(changed_.begin(), changed_.end(), true) != changed_.end()) {
    Publish();
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Learner::Step() {
  buffer_.clear();
  const uint64_t from = applied_.load() + 1;
  if (absl::Status s = log_->Read(from, options_.read_batch, &buffer_); !s.ok()) return s;
  for (Event& event : buffer_) {
    if (event.sequence != applied_.load() + 1) {
      return absl::DataLossError(absl::StrCat("event log has a gap before sequence ",
                                              event.sequence, "; expected ", applied_.load() + 1));
    }
    shop_clock_.Stamp(event);
    for (size_t i = 0; i < models_.size(); ++i) {
      if (Feed(i, event)) changed_[i] = true;
    }
    applied_.store(event.sequence);
  }
  since_publish_ += buffer_.size();
  return buffer_.size();
}

bool Learner::Full() const {
  return std::any_of(waiting_.begin(), waiting_.end(), [this](const std::deque<Event>& w) {
    return w.size() >= options_.max_waiting_events;
  });
}

bool Learner::InStep(size_t i, uint64_t sequence) const {
  for (size_t j : reads_[i]) {
    if (!waiting_[j].empty() && waiting_[j].front().sequence <= sequence) return false;
  }
  for (size_t k : readers_[i]) {
    if (!waiting_[k].empty() && waiting_[k].front().sequence < sequence) return false;
  }
  return true;
}

bool Learner::Feed(size_t i, const Event& event) {
  if (waiting_[i].empty() && InStep(i, event.sequence)) {
    switch (GateFor(i, event)) {
      case FitGate::kOpen:
        return ApplyTo(i, event);
      case FitGate::kAdopted:
        ApplyTo(i, event);
        return true;
      case FitGate::kWait:
        break;
    }
  }
  waiting_[i].push_back(event);
  return models_[i]->Preview(event);
}

bool Learner::Drain() {
  std::vector<bool> drained(models_.size(), false), adopted(models_.size(), false);
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < models_.size(); ++i) {
      std::deque<Event>& waiting = waiting_[i];
      if (waiting.empty() || !InStep(i, waiting.front().sequence)) continue;
      const FitGate gate = GateFor(i, waiting.front());
      if (gate == FitGate::kWait) continue;
      adopted[i] = adopted[i] || gate == FitGate::kAdopted;
      ApplyTo(i, waiting.front());
      waiting.pop_front();
      drained[i] = progress = true;
    }
  }
  bool any = false;
  for (size_t i = 0; i < models_.size(); ++i) {
    if (!drained[i]) continue;
    any = changed_[i] = true;
    // Held back again, behind the next fit: previewed on top of the state
    // that fit's adoption made.
    if (adopted[i]) {
      for (const Event& e : waiting_[i]) models_[i]->Preview(e);
    }
  }
  return any;
}

FitGate Learner::GateFor(size_t i, const Event& event) {
  Model& m = *models_[i];
  if (event.type == EventType::kFitDone && event.payload == m.name()) {
    m.FitDoneAt(static_cast<uint64_t>(event.value), event.sequence);
  }
  return m.Gate(event.sequence);
}

bool Learner::ApplyTo(size_t i, const Event& event) {
  Model& m = *models_[i];
  if (event.type == EventType::kFitDone) return false;  // its gate did the work
  if (event.type != EventType::kRetrain) {
    const auto start = std::chrono::steady_clock::now();
    const bool changed = m.Apply(event);
    published_[i].apply_ns += ElapsedNs(start);
    ++published_[i].applied_events;
    return changed;
  }
  if (!m.CanRetrain() || !(event.payload.empty() || event.payload == m.name())) return false;
  m.Retrain();
  MERCATO_LOG(kInfo) << "retrain of " << m.name() << " requested at sequence " << event.sequence;
  return true;  // publishes that it runs
}

void Learner::Publish() {
  const auto start = std::chrono::steady_clock::now();
  auto next = std::make_shared<Snapshot>();
  const int64_t now = clock_->NowMs();
  bool settled = true;
  for (size_t i = 0; i < models_.size(); ++i) {
    PublishedModel& p = published_[i];
    if (changed_[i]) {
      const auto begin = std::chrono::steady_clock::now();
      p.view = models_[i]->Publish();
      p.apply_ns += ElapsedNs(begin);
      ++p.version;
      p.published_at_ms = now;
      changed_[i] = false;
    }
    p.waiting_events = waiting_[i].size();
    p.applied_sequence =
        waiting_[i].empty() ? applied_.load() : waiting_[i].front().sequence - 1;
    settled = settled && waiting_[i].empty() && !p.view->Running();
  }
  next->version = ++snapshot_version_;
  next->applied_sequence = applied_.load();
  next->shop_time_ms = shop_clock_.now_ms();
  next->published_at_ms = now;
  next->settled = settled;
  next->models = published_;
  ReleaseRetired();
  if (std::shared_ptr<const Snapshot> replaced = holder_.Get())
    retired_.push_back(std::move(replaced));
  if (settled) settled_.Publish(next);
  holder_.Publish(std::move(next));
  since_publish_ = 0;
  publishes_.fetch_add(1);
  publish_ns_.fetch_add(ElapsedNs(start));
}

absl::Status Learner::CheckRetrain(std::string_view name) const {
  for (const auto& m : models_) {
    if (m->name() != name) continue;
    if (!m->CanRetrain()) {
      return absl::UnimplementedError(
          absl::StrCat("model: '", std::string(name), "' learns online and has no retrain"));
    }
    return absl::OkStatus();
  }
  if (name.empty()) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("model: no model named '", std::string(name), "'"));
}

bool Learner::Housekeep() {
  // A finished fit is adopted where its record lands in the log; the event
  // id makes a second record of the same fit (after a restart) a duplicate.
  for (size_t i = 0; i < models_.size() && record_sink_; ++i) {
    const std::optional<uint64_t> started = models_[i]->FinishedFit();
    if (!started || announced_[i] == started) continue;
    announced_[i] = started;
    Event done;
    done.type = EventType::kFitDone;
    done.payload = std::string(models_[i]->name());
    done.value = static_cast<double>(*started);
    done.timestamp_ms = clock_->NowMs();
    done.event_id = absl::StrCat("fit-done/", done.payload, "/", *started);
    record_sink_(std::move(done));
  }
  bool news = Drain();
  for (size_t i = 0; i < models_.size(); ++i) {
    if (models_[i]->Poll()) changed_[i] = news = true;
  }
  return news;
}

void Learner::ReleaseRetired() {
  std::erase_if(retired_,
                [](const std::shared_ptr<const Snapshot>& s) { return s.use_count() == 1; });
}

void SetThreadNice(int nice) {
  // Per-thread on Linux: the thread id names just this thread.
  static_cast<void>(setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice));
}

void Learner::Start() {
  thread_ = std::thread([this] {
    SetThreadNice(options_.nice);
    Run();
  });
}

void Learner::Stop() {
  stop_ = true;
  // The learner thread may be waiting for a retrain: end those first.
  for (auto& model : models_) model->Abandon();
  if (thread_.joinable()) thread_.join();
}

absl::Status Learner::last_error() const {
  absl::MutexLock lock(&error_mu_);
  return last_error_;
}

void Learner::Run() {
  auto last_publish = std::chrono::steady_clock::now();
  const auto interval = absl::ToChronoMilliseconds(options_.publish_interval);
  const auto gap =
      absl::ToChronoMilliseconds(std::min(options_.publish_gap, options_.publish_interval));
  while (!stop_.load()) {
    const bool pending = applied_.load() > snapshot()->applied_sequence;
    if (Full()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // for the fit, in Housekeep
    } else if (applied_.load() >= log_->LastSequence()) {
      // Idle: wait for new events, but not past the next publication due.
      log_->WaitForSequence(applied_.load(),
                            pending ? absl::Milliseconds(1) : options_.publish_interval);
    } else {
      absl::StatusOr<size_t> n = Step();
      if (!n.ok()) {
        // Log a new error once, then retry calmly.
        {
          absl::MutexLock lock(&error_mu_);
          if (n.status() != last_error_) MERCATO_LOG(kError) << "learner: " << n.status();
          last_error_ = n.status();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    ReleaseRetired();
    const bool model_news = Housekeep();
    const auto now = std::chrono::steady_clock::now();
    const bool caught_up = applied_.load() >= log_->LastSequence();
    if (model_news ||
        (applied_.load() > snapshot()->applied_sequence &&
         (now - last_publish >= interval || since_publish_ >= options_.publish_every_events ||
          (caught_up && now - last_publish >= gap)))) {
      Publish();
      last_publish = now;
    }
  }
}

Checkpointer::Checkpointer(const Learner* learner, CheckpointSink* sink, const Clock* clock,
                           absl::Duration interval, uint64_t every_events)
    : learner_(learner),
      sink_(sink),
      clock_(clock),
      interval_(interval),
      every_events_(every_events) {}

Checkpointer::~Checkpointer() { Stop(); }

void Checkpointer::Start() {
  thread_ = std::thread([this] {
    SetThreadNice(learner_->options().nice);
    // How often the applied position is looked at for `every_events_`.
    constexpr absl::Duration kPoll = absl::Seconds(1);
    absl::Time last_at = absl::Now();
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      // Checkpoints take at most a tenth of the time: a large state written
      // every `interval_` would keep a core busy.
      const absl::Duration spacing = kCheckpointTimeShare * absl::Seconds(last_.seconds);
      const absl::Duration wait = std::max(interval_, spacing);
      mu_.AwaitWithTimeout(absl::Condition(&stop_),
                           every_events_ > 0 ? std::min(wait, kPoll) : wait);
      if (stop_) break;
      const absl::Duration elapsed = absl::Now() - last_at;
      const bool due = elapsed >= wait ||
                       (every_events_ > 0 && elapsed >= spacing &&
                        learner_->settled_snapshot()->applied_sequence >=
                            last_.sequence + every_events_);
      if (!due) continue;
      mu_.Unlock();
      absl::StatusOr<CheckpointInfo> info = CheckpointIfChanged();
      if (!info.ok()) MERCATO_LOG(kError) << "checkpoint failed: " << info.status();
      mu_.Lock();
      last_at = absl::Now();
    }
  });
}

void Checkpointer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<CheckpointInfo> Checkpointer::CheckpointNow() {
  absl::MutexLock write_lock(&write_mu_);
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<const Snapshot> snapshot = learner_->settled_snapshot();
  CheckpointInfo info;
  {
    std::vector<std::pair<std::string, std::string>> states;
    for (const PublishedModel& m : snapshot->models) {
      states.emplace_back(m.name, m.view->Encode());
      info.bytes += states.back().second.size();
    }
    states.emplace_back(kLearnerStateName, EncodeLearnerState(*snapshot));
    if (absl::Status s = sink_->WriteCheckpoint(snapshot->applied_sequence, states); !s.ok()) {
      return s;
    }
  }
  // The encoded states are freed now, as are, after a retrain, the factors
  // and index it replaced; glibc would keep that memory from the system.
  malloc_trim(0);
  info.sequence = snapshot->applied_sequence;
  info.snapshot_version = snapshot->version;
  info.written_at_ms = clock_->NowMs();
  info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  absl::MutexLock lock(&mu_);
  last_ = info;
  return info;
}

absl::StatusOr<CheckpointInfo> Checkpointer::CheckpointIfChanged() {
  if (learner_->settled_snapshot()->version == last().snapshot_version) return last();
  return CheckpointNow();
}

CheckpointInfo Checkpointer::last() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

void Checkpointer::SetLoaded(CheckpointInfo info) {
  absl::MutexLock lock(&mu_);
  last_ = info;
}

}  // namespace mercato::core
