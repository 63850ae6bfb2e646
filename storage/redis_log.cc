#include "storage/redis_log.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/log.h"
#include "storage/codec.h"
#include "storage/commit_queue.h"

namespace mercato::storage {
namespace {

// One commit group. KEYS: the stream, the idempotency key prefix. ARGV: the
// window in seconds, then (event_id, event, item row) per event. Answers
// per event its sequence, or minus the sequence of the event that made it a
// duplicate. Stream ids 0-1, 0-2, ... are the sequences.
constexpr char kAppendScript[] = R"lua(
local out = {}
for i = 2, #ARGV, 3 do
  local id, ev, item = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local prev = false
  if id ~= '' then prev = redis.call('GET', KEYS[2] .. id) end
  if prev then
    out[#out + 1] = -tonumber(prev)
  else
    local xid
    if item ~= '' then
      xid = redis.call('XADD', KEYS[1], '0-*', 'e', ev, 'i', item)
    else
      xid = redis.call('XADD', KEYS[1], '0-*', 'e', ev)
    end
    local seq = tonumber(string.sub(xid, 3))
    if id ~= '' then redis.call('SET', KEYS[2] .. id, seq, 'EX', ARGV[1]) end
    out[#out + 1] = seq
  end
end
return out
)lua";

// Records a replica's position and trims. KEYS: the stream, the replicas
// hash. ARGV: name, checkpoint sequence, log end, timeout ms, entries to
// retain. Answers the number of entries trimmed.
constexpr char kPositionScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. now)
local all = redis.call('HGETALL', KEYS[2])
local oldest = nil
for i = 1, #all, 2 do
  local cp, ms = string.match(all[i + 1], '^(%d+) %d+ (%d+)$')
  if cp and now - tonumber(ms) <= tonumber(ARGV[4]) then
    cp = tonumber(cp)
    if oldest == nil or cp < oldest then oldest = cp end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if oldest == nil or #last == 0 then return 0 end
local head = tonumber(string.sub(last[1][1], 3))
local keep_from = math.min(oldest + 1, head - tonumber(ARGV[5]) + 1)
if keep_from <= 1 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. keep_from)
)lua";

constexpr size_t kMirrorBatch = 4096;
constexpr int kBlockMs = 500;
constexpr absl::Duration kMinBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

struct FreeReply {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, FreeReply>;

// One connection; unusable once a round trip failed (then made anew).
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const RedisLogOptions& o) {
    const std::string where = absl::StrCat("Redis at ", o.host, ":", o.port);
    redisContext* c =
        redisConnectWithTimeout(o.host.c_str(), o.port, absl::ToTimeval(o.io_timeout));
    if (c == nullptr) return absl::UnavailableError(absl::StrCat(where, ": cannot allocate"));
    std::unique_ptr<Connection> conn(new Connection(c, where));
    if (c->err) return absl::UnavailableError(absl::StrCat(where, ": ", c->errstr));
    // Longer than any blocking read, which waits kBlockMs on the server.
    if (redisSetTimeout(c, absl::ToTimeval(o.io_timeout + absl::Milliseconds(kBlockMs))) !=
        REDIS_OK) {
      return absl::UnavailableError(absl::StrCat(where, ": cannot set the timeout"));
    }
    if (!o.password.empty()) {
      absl::StatusOr<Reply> r = conn->Run({"AUTH", o.password});
      if (!r.ok()) return r.status();
    }
    return conn;
  }
  ~Connection() { redisFree(c_); }

  // The reply of `args`; UNAVAILABLE when the round trip failed (the
  // connection is then broken), FAILED_PRECONDITION for an error reply.
  absl::StatusOr<Reply> Run(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (std::string_view a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    Reply r(static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data())));
    if (r == nullptr) {
      broken_ = true;
      return absl::UnavailableError(absl::StrCat(where_, ": ", c_->errstr));
    }
    if (r->type == REDIS_REPLY_ERROR) {
      return absl::FailedPreconditionError(
          absl::StrCat(where_, ": ", absl::string_view(r->str, r->len)));
    }
    return r;
  }
  bool broken() const { return broken_; }

 private:
  Connection(redisContext* c, std::string where) : c_(c), where_(std::move(where)) {}
  redisContext* c_;
  const std::string where_;
  bool broken_ = false;
};

absl::string_view Text(const redisReply* r) {
  return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
             ? absl::string_view(r->str, r->len)
             : absl::string_view();
}

// The sequence of a stream id "0-N"; 0 when it is none.
uint64_t IdSequence(absl::string_view id) {
  uint64_t seq = 0;
  if (id.substr(0, 2) != "0-" || !absl::SimpleAtoi(id.substr(2), &seq)) return 0;
  return seq;
}

}  // namespace

absl::StatusOr<RedisLogOptions> ParseRedisUrl(std::string_view url_in, std::string_view flag_in) {
  const absl::string_view url(url_in.data(), url_in.size());
  const absl::string_view flag(flag_in.data(), flag_in.size());
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": '", url, "' ", why, " (redis://[:PASSWORD@]HOST:PORT/STREAM)"));
  };
  constexpr absl::string_view kScheme = "redis://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad("does not start with redis://");
  absl::string_view rest = url.substr(kScheme.size());
  RedisLogOptions o;
  if (const size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view auth = rest.substr(0, at);
    if (auth.empty() || auth[0] != ':') return bad("has credentials other than :PASSWORD@");
    o.password = std::string(auth.substr(1));
    rest = rest.substr(at + 1);
  }
  const size_t slash = rest.find('/');
  if (slash == absl::string_view::npos || slash + 1 == rest.size()) return bad("names no stream");
  o.stream = std::string(rest.substr(slash + 1));
  const absl::string_view host_port = rest.substr(0, slash);
  const size_t colon = host_port.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return bad("has no HOST:PORT");
  o.host = std::string(host_port.substr(0, colon));
  if (!absl::SimpleAtoi(host_port.substr(colon + 1), &o.port) || o.port <= 0 || o.port > 65535) {
    return bad("has no port in 1-65535");
  }
  return o;
}

struct RedisLog::Impl {
  RedisLogOptions options;
  Store* store;
  RedisLog* owner;

  // One caller's share of a commit group.
  struct Writer {
    const std::vector<core::Event>* events;
    // Per event, its catalogue row, or null for none at all.
    const std::vector<std::string>* rows = nullptr;
    AppendResult result;
  };
  std::unique_ptr<CommitQueue<Writer>> queue;
  std::unique_ptr<Connection> conn;  // the group's being written
  absl::Time next_connect = absl::InfinitePast();
  absl::Status connect_error;

  absl::Status CommitGroup(const std::vector<Writer*>& group);
  // The leader's connection, made anew after a failure but not sooner than
  // a backoff after the last failed attempt.
  absl::StatusOr<Connection*> WriterConnection();

  // Mirror.
  std::function<uint64_t()> checkpoint_sequence;
  std::thread thread;
  absl::Mutex stop_mu;
  bool stop ABSL_GUARDED_BY(stop_mu) = false;
  mutable absl::Mutex status_mu;
  absl::Status mirror_status ABSL_GUARDED_BY(status_mu) =
      absl::UnavailableError("connecting to Redis");
  void SetMirrorStatus(absl::Status s) {
    absl::MutexLock lock(&status_mu);
    if (!s.ok() && mirror_status.ToString() != s.ToString()) {
      MERCATO_LOG(kWarning) << "shared log: " << s;
    } else if (s.ok() && !mirror_status.ok()) {
      MERCATO_LOG(kInfo) << "shared log: reaching " << options.stream << " in Redis";
    }
    mirror_status = std::move(s);
  }
  // False once stopped; otherwise after `d`.
  bool Sleep(absl::Duration d) {
    absl::MutexLock lock(&stop_mu);
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stop_mu) { return stop; };
    stop_mu.AwaitWithTimeout(absl::Condition(&stopped), d);
    return !stop;
  }
  void Run();
  // Copies what follows `*last` into the store; OK with nothing new.
  absl::Status MirrorOnce(Connection& c, uint64_t* last);
  // The stream's first and last sequences (first = head + 1 when empty).
  struct Extent {
    uint64_t first = 1, head = 0;
  };
  absl::StatusOr<Extent> QueryExtent(Connection& c);
  // Why a replica whose log ends before `next` cannot go on at `first`.
  absl::Status Trimmed(uint64_t first, uint64_t next) const;
  absl::Status RecordPosition(Connection& c, uint64_t last);
  std::string ReplicasKey() const { return options.stream + ":replicas"; }
};

RedisLog::RedisLog(RedisLogOptions options, Store* store) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->queue = std::make_unique<CommitQueue<Impl::Writer>>(
      impl_->options.max_group_events,
      [impl = impl_.get()](const std::vector<Impl::Writer*>& group) {
        return impl->CommitGroup(group);
      });
  impl_->store = store;
  impl_->owner = this;
  head_ = store->LastSequence();
}

RedisLog::~RedisLog() { Stop(); }

absl::StatusOr<Connection*> RedisLog::Impl::WriterConnection() {
  if (conn && !conn->broken()) return conn.get();
  conn.reset();
  const absl::Time now = absl::Now();
  if (now < next_connect) return connect_error;
  absl::StatusOr<std::unique_ptr<Connection>> c = Connection::Open(options);
  if (!c.ok()) {
    connect_error = c.status();
    next_connect = now + absl::Milliseconds(200);
    return c.status();
  }
  conn = *std::move(c);
  return conn.get();
}

absl::Status RedisLog::Impl::CommitGroup(const std::vector<Writer*>& group) {
  absl::StatusOr<Connection*> c = WriterConnection();
  if (!c.ok()) return c.status();
  const std::string ttl =
      absl::StrCat(std::max<int64_t>(1, absl::ToInt64Seconds(options.dedup_window)));
  const std::string prefix = options.stream + ":id:";
  std::vector<std::string> encoded;
  size_t total = 0;
  for (const Writer* w : group) total += w->events->size();
  encoded.reserve(total);
  std::vector<std::string_view> args = {"EVAL", kAppendScript, "2", options.stream, prefix, ttl};
  args.reserve(args.size() + 3 * total);
  for (const Writer* w : group) {
    for (size_t i = 0; i < w->events->size(); ++i) {
      const core::Event& e = (*w->events)[i];
      encoded.push_back(core::EncodeEvent(e));
      args.push_back(e.event_id);
      args.push_back(encoded.back());
      args.push_back(w->rows != nullptr ? std::string_view((*w->rows)[i]) : std::string_view());
    }
  }
  absl::StatusOr<Reply> r = (*c)->Run(args);
  if (!r.ok()) return absl::UnavailableError(r.status().message());
  if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements != total) {
    return absl::InternalError("Redis: the append script answered no sequence per event");
  }
  uint64_t highest = 0;
  size_t k = 0;
  for (Writer* w : group) {
    w->result.sequences.assign(w->events->size(), 0);
    for (size_t i = 0; i < w->events->size(); ++i, ++k) {
      const long long v = (*r)->element[k]->integer;
      highest = std::max<uint64_t>(highest, static_cast<uint64_t>(v < 0 ? -v : v));
      if (v > 0) {
        w->result.sequences[i] = static_cast<uint64_t>(v);
        ++w->result.accepted;
      } else {
        ++w->result.duplicates;
      }
    }
  }
  if (options.wait_replicas > 0) {
    const std::string n = absl::StrCat(options.wait_replicas);
    const std::string ms = absl::StrCat(absl::ToInt64Milliseconds(options.wait_timeout));
    absl::StatusOr<Reply> waited = (*c)->Run({"WAIT", n, ms});
    if (!waited.ok()) return absl::UnavailableError(waited.status().message());
    if ((*waited)->integer < options.wait_replicas) {
      return absl::UnavailableError(absl::StrCat(
          "Redis: ", (*waited)->integer, " of the ", options.wait_replicas,
          " replicas asked for (--redis_wait_replicas) confirmed the write within ",
          absl::FormatDuration(options.wait_timeout), "; a retry with the same event ids is safe"));
    }
  }
  for (Writer* w : group) w->result.last_sequence = highest;
  owner->RaiseHead(highest);
  return absl::OkStatus();
}

absl::StatusOr<AppendResult> RedisLog::Append(const std::vector<core::Event>& events, Durability) {
  Impl::Writer self;
  self.events = &events;
  return impl_->queue->Commit(&self);
}

absl::Status RedisLog::PutItems(const std::vector<core::Item>& items) {
  const CatalogUpsert upsert = ItemUpserts(items);
  Impl::Writer self;
  self.events = &upsert.events;
  self.rows = &upsert.rows;
  return impl_->queue->Commit(&self).status();
}

absl::StatusOr<bool> RedisLog::DeleteItem(std::string_view item_id) {
  absl::StatusOr<core::Item> existing = impl_->store->GetItem(item_id);
  if (absl::IsNotFound(existing.status())) return false;
  if (!existing.ok()) return existing.status();
  absl::StatusOr<AppendResult> r = Append({ItemDeleteEvent(item_id)});
  if (!r.ok()) return r.status();
  return true;
}

void RedisLog::Start(std::function<uint64_t()> checkpoint_sequence) {
  impl_->checkpoint_sequence = std::move(checkpoint_sequence);
  impl_->thread = std::thread([this] { impl_->Run(); });
}

void RedisLog::Stop() {
  {
    absl::MutexLock lock(&impl_->stop_mu);
    impl_->stop = true;
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

absl::Status RedisLog::mirror_status() const {
  absl::MutexLock lock(&impl_->status_mu);
  return impl_->mirror_status;
}

absl::StatusOr<RedisLog::Impl::Extent> RedisLog::Impl::QueryExtent(Connection& c) {
  absl::StatusOr<Reply> r = c.Run({"XINFO", "STREAM", options.stream});
  if (absl::IsFailedPrecondition(r.status())) return Extent{1, 0};  // no such stream yet
  if (!r.ok()) return r.status();
  Extent extent;
  bool found = false;
  const redisReply* first_entry = nullptr;
  for (size_t i = 0; i + 1 < (*r)->elements; i += 2) {
    const absl::string_view key = Text((*r)->element[i]);
    if (key == "last-generated-id") {
      extent.head = IdSequence(Text((*r)->element[i + 1]));
      found = true;
    } else if (key == "first-entry") {
      first_entry = (*r)->element[i + 1];
    }
  }
  if (!found) return absl::InternalError("Redis: XINFO STREAM gave no last-generated-id");
  // Empty (trimmed to nothing): what comes next is the first there is.
  extent.first =
      first_entry != nullptr && first_entry->type == REDIS_REPLY_ARRAY && first_entry->elements > 0
          ? IdSequence(Text(first_entry->element[0]))
          : extent.head + 1;
  return extent;
}

absl::Status RedisLog::Impl::Trimmed(uint64_t first, uint64_t next) const {
  return absl::FailedPreconditionError(absl::StrCat(
      "the stream '", options.stream, "' goes on at sequence ", first, " where ", next,
      " should follow: the entries between were trimmed, or this data folder was made from "
      "another stream; start this replica from a recent backup (--restore_from)"));
}

absl::Status RedisLog::Impl::MirrorOnce(Connection& c, uint64_t* last) {
  const std::string count = absl::StrCat(kMirrorBatch);
  const std::string block = absl::StrCat(kBlockMs);
  const std::string from = absl::StrCat("0-", *last);
  absl::StatusOr<Reply> r =
      c.Run({"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", options.stream, from});
  if (!r.ok()) return r.status();
  if ((*r)->type != REDIS_REPLY_ARRAY || (*r)->elements == 0) return absl::OkStatus();  // nil
  const redisReply* stream = (*r)->element[0];
  if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2) {
    return absl::InternalError("Redis: XREAD answered no stream");
  }
  const redisReply* entries = stream->element[1];
  std::vector<MirroredEntry> batch;
  batch.reserve(entries->elements);
  for (size_t i = 0; i < entries->elements; ++i) {
    const redisReply* entry = entries->element[i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) {
      return absl::DataLossError("Redis: a stream entry that is no (id, fields) pair");
    }
    const uint64_t seq = IdSequence(Text(entry->element[0]));
    if (seq != *last + 1 + batch.size()) return Trimmed(seq, *last + 1 + batch.size());
    MirroredEntry out;
    const redisReply* fields = entry->element[1];
    bool has_event = false;
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
      const absl::string_view name = Text(fields->element[f]);
      const absl::string_view value = Text(fields->element[f + 1]);
      if (name == "e") {
        absl::StatusOr<core::Event> e =
            core::DecodeEvent(std::string_view(value.data(), value.size()));
        if (!e.ok()) {
          return absl::DataLossError(
              absl::StrCat("stream entry 0-", seq, ": ", e.status().message()));
        }
        out.event = *std::move(e);
        has_event = true;
      } else if (name == "i") {
        out.item = std::string(value);
      }
    }
    if (!has_event)
      return absl::DataLossError(absl::StrCat("stream entry 0-", seq, " has no event"));
    out.event.sequence = seq;
    batch.push_back(std::move(out));
  }
  if (absl::Status s = store->Mirror(batch); !s.ok()) return s;
  *last += batch.size();
  owner->RaiseHead(*last);
  if (batch.size() == kMirrorBatch) {
    absl::StatusOr<Extent> extent = QueryExtent(c);
    if (!extent.ok()) return extent.status();
    owner->RaiseHead(extent->head);
  }
  return absl::OkStatus();
}

absl::Status RedisLog::Impl::RecordPosition(Connection& c, uint64_t last) {
  const std::string cp = absl::StrCat(checkpoint_sequence ? checkpoint_sequence() : 0);
  const std::string end = absl::StrCat(last);
  const std::string timeout = absl::StrCat(absl::ToInt64Milliseconds(options.replica_timeout));
  const std::string retain = absl::StrCat(options.retain_events);
  absl::StatusOr<Reply> r = c.Run({"EVAL", kPositionScript, "2", options.stream, ReplicasKey(),
                                   options.replica_name, cp, end, timeout, retain});
  if (!r.ok()) return r.status();
  if ((*r)->integer > 0) {
    MERCATO_LOG(kInfo) << "shared log: trimmed " << (*r)->integer << " entries of "
                       << options.stream;
  }
  return absl::OkStatus();
}

void RedisLog::Impl::Run() {
  uint64_t last = store->LastSequence();
  absl::Duration backoff = kMinBackoff;
  std::unique_ptr<Connection> c;
  absl::Time next_position = absl::InfinitePast();
  const auto fail = [&](absl::Status s) {
    SetMirrorStatus(std::move(s));
    if (c && c->broken()) {
      c.reset();
      owner->connected_ = false;
    }
    const bool go_on = Sleep(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
    return go_on;
  };
  for (;;) {
    {
      absl::MutexLock lock(&stop_mu);
      if (stop) break;
    }
    if (!c) {
      absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(options);
      if (!opened.ok()) {
        owner->connected_ = false;
        if (!fail(opened.status())) break;
        continue;
      }
      c = *std::move(opened);
      absl::StatusOr<Extent> extent = QueryExtent(*c);
      if (extent.ok()) owner->RaiseHead(extent->head);
      absl::Status usable = extent.status();
      // A stream that ends before this replica's log is not the one its
      // data came from (or Redis lost what it had acknowledged); one that
      // starts after it was trimmed past this replica.
      if (extent.ok() && extent->head < last) {
        usable = absl::FailedPreconditionError(absl::StrCat(
            "the stream '", options.stream, "' ends at ", extent->head,
            ", before this replica's log end ", last,
            ": Redis lost acknowledged entries, or this data folder belongs to another stream"));
      } else if (extent.ok() && extent->first > last + 1) {
        usable = Trimmed(extent->first, last + 1);
      }
      if (!usable.ok()) {
        c.reset();
        if (!fail(usable)) break;
        continue;
      }
      owner->connected_ = true;
      MERCATO_LOG(kInfo) << "shared log: reading " << options.stream << " from sequence "
                         << last + 1;
    }
    if (absl::Status s = MirrorOnce(*c, &last); !s.ok()) {
      if (!fail(s)) break;
      continue;
    }
    if (absl::Now() >= next_position) {
      if (absl::Status s = RecordPosition(*c, last); !s.ok()) {
        if (!fail(s)) break;
        continue;
      }
      next_position = absl::Now() + options.position_interval;
    }
    backoff = kMinBackoff;
    SetMirrorStatus(absl::OkStatus());
  }
  owner->connected_ = false;
}

}  // namespace mercato::storage
