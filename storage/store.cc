#include "storage/store.h"

#include <algorithm>
#include <filesystem>
#include <functional>

#include "absl/base/thread_annotations.h"
#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/checkpoint.h"
#include "rocksdb/write_batch.h"
#include "storage/codec.h"
#include "storage/commit_queue.h"
#include "storage/log_writer.h"

namespace mercato::storage {
namespace {

// Column families, in the order they are opened.
enum Cf { kDefault = 0, kEvents, kEventIds, kCatalog, kCheckpoints, kMeta, kAudit, kNumCfs };
const char* const kCfNames[kNumCfs] = {"default",     "events", "event_ids", "catalog",
                                       "checkpoints", "meta",   "audit"};

// Meta keys of erasures: one per pending erasure (the prefix and the
// USER_DELETE's sequence key), and one while a full compaction is due.
constexpr char kErasurePrefix[] = "erasure/";
constexpr char kCompactionDueKey[] = "compaction-due";
constexpr char kLastCompactionKey[] = "last-compaction";

std::string ErasureKey(uint64_t sequence) { return kErasurePrefix + SequenceKey(sequence); }

// An audit record's value: format, time, who, method, request, code, message.
constexpr uint8_t kAuditFormat = 1;

// The checkpoint record: format, sequence, time written, then each state's
// model name and size. Format 1 (still read) kept each state whole under its
// name; format 2 keeps it in chunks under ChunkKey(name, i).
constexpr char kCheckpointMetaKey[] = "checkpoint";
constexpr uint8_t kCheckpointMetaFormat = 2;
constexpr size_t kCheckpointChunkBytes = 1 << 20;
// Above every chunk key (model names are ASCII).
constexpr char kPastEveryChunkKey[] = "\xff";

std::string ChunkKey(std::string_view model, uint64_t chunk) {
  std::string key(model);
  key.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(chunk >> shift));
  return key;
}

uint64_t ChunkCount(uint64_t bytes) {
  return bytes / kCheckpointChunkBytes + (bytes % kCheckpointChunkBytes != 0);
}

absl::Status ToStatus(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

}  // namespace

struct Store::Impl {
  StoreOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;

  // One caller's share of a commit group.
  struct Writer {
    const std::vector<core::Event>* events;
    // Per event, its catalogue row (EncodeItem), or null for none at all.
    const std::vector<std::string>* rows = nullptr;
    AppendResult result;
    // Whether this writer needs its write fsynced before it returns.
    bool sync = true;
  };
  std::unique_ptr<CommitQueue<Writer>> queue;
  mutable absl::Mutex mu;
  uint64_t last_sequence ABSL_GUARDED_BY(mu) = 0;
  std::atomic<uint64_t> last_sequence_atomic{0};

  rocksdb::ColumnFamilyHandle* cf(Cf c) const { return cfs[c]; }
  // The last sequence key of `c` (0 when empty).
  absl::StatusOr<uint64_t> LastKey(Cf c, absl::string_view what) const {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, cf(c)));
    it->SeekToLast();
    const uint64_t last = it->Valid() ? DecodeSequenceKey(it->key().ToStringView()) : 0;
    if (absl::Status s = ToStatus(it->status(), what); !s.ok()) return s;
    return last;
  }
  rocksdb::WriteOptions SyncedWrite() const {
    rocksdb::WriteOptions w;
    w.sync = options.sync;
    return w;
  }

  // Adds the log entry `e` at `sequence` to `batch`, with what it does
  // besides: an upsert's catalogue row (`row`, when not empty), an
  // ITEM_DELETE's removal of the row, a USER_DELETE's erasure marker.
  rocksdb::Status PutEntry(rocksdb::WriteBatch& batch, uint64_t sequence, const core::Event& e,
                           std::string_view row) const {
    rocksdb::Status s = batch.Put(cf(kEvents), SequenceKey(sequence), core::EncodeEvent(e));
    if (s.ok() && !row.empty()) s = batch.Put(cf(kCatalog), e.item_id, row);
    if (s.ok() && e.type == core::EventType::kItemDelete) s = batch.Delete(cf(kCatalog), e.item_id);
    if (s.ok() && e.type == core::EventType::kUserDelete) {
      s = batch.Put(cf(kMeta), ErasureKey(sequence), "");
    }
    return s;
  }
  // Runs one commit group: dedupes, numbers and writes every writer's events
  // in one synced batch, then moves the log end. One runs at a time
  // (CommitQueue).
  absl::Status CommitGroup(const std::vector<Writer*>& group);
  absl::Mutex audit_mu;
  uint64_t last_audit ABSL_GUARDED_BY(audit_mu) = 0;
};

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  if (!impl_->db) return;
  // Written memtables go to table files now, so that the next Open does not
  // replay them from the write-ahead log. Nothing is lost if this fails: the
  // log still has it.
  impl_->db->Flush(rocksdb::FlushOptions(), impl_->cfs).PermitUncheckedError();
  for (auto* h : impl_->cfs) {
    // Closing a handle cannot lose data; its status is only informative.
    impl_->db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  impl_->db->Close().PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  if (options.path.empty()) return absl::InvalidArgumentError("store path is empty");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->queue = std::make_unique<CommitQueue<Impl::Writer>>(
      options.max_group_events, [impl = impl.get()](const std::vector<Impl::Writer*>& group) {
        return impl->CommitGroup(group);
      });

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  // Flushes and compactions run at the lowest CPU priority: request threads
  // win the cores, and background work takes the idle time.
  db_options.env->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::HIGH);
  db_options.env->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW);
  db_options.max_total_wal_size = 256 << 20;
  // A new MANIFEST, holding only the live files, at every change of the
  // file set, and the old one deleted: the file boundaries (keys) of files
  // an erasure compacted away stay in no MANIFEST (CompactEverything).
  db_options.max_manifest_file_size = 1;

  rocksdb::ColumnFamilyOptions base;
  base.OptimizeLevelStyleCompaction(128 << 20);
  rocksdb::ColumnFamilyOptions with_bloom = base;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  with_bloom.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  with_bloom.optimize_filters_for_hits = false;

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (int i = 0; i < kNumCfs; ++i) {
    descriptors.emplace_back(kCfNames[i], i == kEventIds || i == kCatalog ? with_bloom : base);
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, options.path, descriptors, &impl->cfs, &raw);
  if (!s.ok()) return ToStatus(s, absl::StrCat("opening ", options.path));
  impl->db.reset(raw);

  // The log's end is its last key, and so is the audit records'.
  absl::StatusOr<uint64_t> last = impl->LastKey(kEvents, "reading the log end");
  if (!last.ok()) return last.status();
  {
    absl::MutexLock lock(&impl->mu);
    impl->last_sequence = *last;
  }
  impl->last_sequence_atomic = *last;
  absl::StatusOr<uint64_t> last_audit = impl->LastKey(kAudit, "reading the audit end");
  if (!last_audit.ok()) return last_audit.status();
  {
    absl::MutexLock lock(&impl->audit_mu);
    impl->last_audit = *last_audit;
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

absl::Status Store::Impl::CommitGroup(const std::vector<Writer*>& group) {
  // Gather every event id of the group and look them all up at once. An
  // event without an id (a record the server made) has no idempotency key.
  std::vector<rocksdb::Slice> keys;
  for (Writer* w : group) {
    for (const core::Event& e : *w->events) {
      if (!e.event_id.empty()) keys.emplace_back(e.event_id);
    }
  }
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  if (!keys.empty()) {
    db->MultiGet(rocksdb::ReadOptions(), cf(kEventIds), keys.size(), keys.data(), values.data(),
                 statuses.data());
  }

  rocksdb::WriteBatch batch;
  absl::flat_hash_set<std::string_view> in_group;
  uint64_t seq = last_sequence_atomic.load() + 1;
  size_t k = 0;  // next lookup result
  for (Writer* w : group) {
    w->result.sequences.assign(w->events->size(), 0);
    for (size_t i = 0; i < w->events->size(); ++i) {
      const core::Event& e = (*w->events)[i];
      const bool keyed = !e.event_id.empty();
      if (keyed) {
        const rocksdb::Status& found = statuses[k++];
        if (!found.ok() && !found.IsNotFound()) return ToStatus(found, "looking up event ids");
        if (found.ok() || !in_group.insert(e.event_id).second) {
          ++w->result.duplicates;
          continue;
        }
      }
      rocksdb::Status s = PutEntry(batch, seq, e, w->rows ? (*w->rows)[i] : std::string_view());
      if (s.ok() && keyed) s = batch.Put(cf(kEventIds), e.event_id, SequenceKey(seq));
      if (!s.ok()) return ToStatus(s, "building the log batch");
      w->result.sequences[i] = seq++;
      ++w->result.accepted;
    }
  }
  if (batch.Count() > 0) {
    // One fsync serves the group when any of its writers needs one.
    rocksdb::WriteOptions write = SyncedWrite();
    write.sync = write.sync && std::any_of(group.begin(), group.end(),
                                           [](const Writer* w) { return w->sync; });
    if (absl::Status s = ToStatus(db->Write(write, &batch), "writing the log"); !s.ok()) {
      return s;
    }
  }
  {
    absl::MutexLock lock(&mu);
    last_sequence = seq - 1;
    last_sequence_atomic.store(last_sequence);
  }
  for (Writer* w : group) w->result.last_sequence = seq - 1;
  return absl::OkStatus();
}

absl::StatusOr<AppendResult> Store::Append(const std::vector<core::Event>& events,
                                           Durability durability) {
  Impl::Writer self;
  self.events = &events;
  self.sync = durability == Durability::kSynced;
  return impl_->queue->Commit(&self);
}

uint64_t Store::LastSequence() const { return impl_->last_sequence_atomic.load(); }

absl::Status Store::Read(uint64_t from, size_t max, std::vector<core::Event>* out) const {
  const uint64_t last = LastSequence();
  if (from > last || max == 0) return absl::OkStatus();
  rocksdb::ReadOptions ro;
  const std::string upper = SequenceKey(last + 1);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->cf(kEvents)));
  size_t n = 0;
  for (it->Seek(SequenceKey(from)); it->Valid() && n < max; it->Next(), ++n) {
    absl::StatusOr<core::Event> e = core::DecodeEvent(it->value().ToStringView());
    if (!e.ok()) {
      return absl::DataLossError(absl::StrCat("log entry ", DecodeSequenceKey(it->key().ToStringView()),
                                              ": ", e.status().message()));
    }
    e->sequence = DecodeSequenceKey(it->key().ToStringView());
    out->push_back(*std::move(e));
  }
  return ToStatus(it->status(), "reading the log");
}

void Store::WaitForSequence(uint64_t after, absl::Duration timeout) const {
  absl::MutexLock lock(&impl_->mu);
  auto past = [this, after]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->last_sequence > after;
  };
  impl_->mu.AwaitWithTimeout(absl::Condition(&past), timeout);
}

absl::Status Store::PutItems(const std::vector<core::Item>& items) {
  const CatalogUpsert upsert = ItemUpserts(items);
  Impl::Writer self;
  self.events = &upsert.events;
  self.rows = &upsert.rows;
  return impl_->queue->Commit(&self).status();
}

absl::StatusOr<core::Item> Store::GetItem(std::string_view item_id) const {
  std::string value;
  rocksdb::Status s = impl_->db->Get({}, impl_->cf(kCatalog), item_id, &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("no item '", std::string(item_id), "'"));
  if (!s.ok()) return ToStatus(s, "reading the catalogue");
  return DecodeItem(value);
}

absl::StatusOr<bool> Store::DeleteItem(std::string_view item_id) {
  absl::StatusOr<core::Item> existing = GetItem(item_id);
  if (absl::IsNotFound(existing.status())) return false;
  if (!existing.ok()) return existing.status();
  // The row leaves the catalogue with the ITEM_DELETE (PutEntry), so the
  // models see the deletion in log order, as they see upserts.
  if (absl::Status s = Append({ItemDeleteEvent(item_id)}).status(); !s.ok()) return s;
  return true;
}

absl::Status Store::Mirror(const std::vector<MirroredEntry>& entries) {
  if (entries.empty()) return absl::OkStatus();
  const uint64_t first = LastSequence() + 1;
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (size_t i = 0; i < entries.size() && s.ok(); ++i) {
    const core::Event& e = entries[i].event;
    if (e.sequence != first + i) {
      return absl::FailedPreconditionError(
          absl::StrCat("shared log entry ", e.sequence, " where ", first + i, " should follow"));
    }
    if (!entries[i].item.empty()) {
      if (absl::StatusOr<core::Item> item = DecodeItem(entries[i].item); !item.ok()) {
        return absl::DataLossError(
            absl::StrCat("shared log entry ", e.sequence, ": item row: ", item.status().message()));
      }
    }
    s = impl_->PutEntry(batch, e.sequence, e, entries[i].item);
  }
  if (!s.ok()) return ToStatus(s, "building the mirror batch");
  // Synced, so that no checkpoint written later is ever ahead of the log
  // after a power cut.
  if (absl::Status st =
          ToStatus(impl_->db->Write(impl_->SyncedWrite(), &batch), "writing the mirrored log");
      !st.ok()) {
    return st;
  }
  absl::MutexLock lock(&impl_->mu);
  impl_->last_sequence = entries.back().event.sequence;
  impl_->last_sequence_atomic.store(impl_->last_sequence);
  return absl::OkStatus();
}

absl::Status Store::WriteCheckpoint(
    uint64_t sequence, const std::vector<std::pair<std::string, std::string>>& states) {
  // Each state goes in chunks into a table file of its own column family, as
  // does the record naming them; both files are then ingested in one atomic
  // step. Nothing passes through the write-ahead log or the memtables, which
  // would hold (and write) the whole state again.
  std::vector<const std::pair<std::string, std::string>*> sorted;
  for (const auto& named : states) sorted.push_back(&named);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::string meta;
  core::ByteWriter w(&meta);
  w.U8(kCheckpointMetaFormat);
  w.Fixed64(sequence);
  w.I64(core::Clock::Real()->NowMs());
  w.Varint(sorted.size());
  for (const auto* named : sorted) {
    w.Str(named->first);
    w.Varint(named->second.size());
  }

  const std::filesystem::path dir =
      std::filesystem::path(impl_->options.path) / "checkpoint.ingest";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);  // a crashed attempt's files
  if (std::filesystem::create_directory(dir, ec); ec) {
    return absl::InternalError(absl::StrCat("creating ", dir.string(), ": ", ec.message()));
  }
  const auto remove_dir = absl::MakeCleanup([&dir] {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  });
  const auto table_file = [&](Cf cf, const std::string& file,
                              const std::function<rocksdb::Status(rocksdb::SstFileWriter&)>& fill)
      -> absl::StatusOr<rocksdb::IngestExternalFileArg> {
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(),
                                  rocksdb::Options(impl_->db->GetDBOptions(),
                                                   impl_->db->GetOptions(impl_->cf(cf))),
                                  impl_->cf(cf));
    const std::string path = (dir / file).string();
    rocksdb::Status s = writer.Open(path);
    if (s.ok()) s = fill(writer);
    if (s.ok()) s = writer.Finish();  // fsyncs the file
    if (!s.ok()) return ToStatus(s, absl::StrCat("writing the checkpoint file ", path));
    rocksdb::IngestExternalFileArg arg;
    arg.column_family = impl_->cf(cf);
    arg.external_files = {path};
    arg.options.move_files = true;
    return arg;
  };
  absl::StatusOr<rocksdb::IngestExternalFileArg> chunks =
      table_file(kCheckpoints, "states.sst", [&](rocksdb::SstFileWriter& writer) {
        // Whatever an older checkpoint left between and around these states
        // (states of other models, chunks beyond a state's new end) goes.
        std::string end_of_previous;
        rocksdb::Status s;
        for (const auto* named : sorted) {
          const std::string first = ChunkKey(named->first, 0);
          if (end_of_previous < first) s = writer.DeleteRange(end_of_previous, first);
          const std::string& state = named->second;
          for (size_t i = 0; s.ok() && i < ChunkCount(state.size()); ++i) {
            const size_t at = i * kCheckpointChunkBytes;
            s = writer.Put(ChunkKey(named->first, i),
                           rocksdb::Slice(state.data() + at,
                                          std::min(kCheckpointChunkBytes, state.size() - at)));
          }
          if (!s.ok()) return s;
          end_of_previous = ChunkKey(named->first, ChunkCount(state.size()));
        }
        return writer.DeleteRange(end_of_previous, kPastEveryChunkKey);
      });
  if (!chunks.ok()) return chunks.status();
  absl::StatusOr<rocksdb::IngestExternalFileArg> record =
      table_file(kMeta, "record.sst", [&](rocksdb::SstFileWriter& writer) {
        return writer.Put(kCheckpointMetaKey, meta);
      });
  if (!record.ok()) return record.status();
  return ToStatus(impl_->db->IngestExternalFiles({*chunks, *record}), "ingesting the checkpoint");
}

absl::StatusOr<std::optional<LoadedCheckpoint>> Store::ReadCheckpoint() const {
  // One consistent view of the record and the states it names.
  const rocksdb::Snapshot* snap = impl_->db->GetSnapshot();
  const auto release = absl::MakeCleanup([&] { impl_->db->ReleaseSnapshot(snap); });
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  std::string meta;
  rocksdb::Status s = impl_->db->Get(ro, impl_->cf(kMeta), kCheckpointMetaKey, &meta);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return ToStatus(s, "reading the checkpoint record");
  core::ByteReader r(meta);
  LoadedCheckpoint cp;
  const uint8_t format = r.U8();
  if (format != 1 && format != kCheckpointMetaFormat) {
    return absl::DataLossError("checkpoint record: unknown format version");
  }
  cp.sequence = r.Fixed64();
  cp.written_at_ms = r.I64();
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro, impl_->cf(kCheckpoints)));
  for (uint64_t n = r.Varint(); n > 0 && r.status().ok(); --n) {
    std::string name = r.Str();
    std::string state;
    if (format == 1) {
      s = impl_->db->Get(ro, impl_->cf(kCheckpoints), name, &state);
      if (!s.ok()) return ToStatus(s, absl::StrCat("reading the checkpoint of ", name));
    } else {
      const uint64_t bytes = r.Varint();
      if (!r.status().ok()) break;
      const uint64_t chunks = ChunkCount(bytes);
      const auto at_chunk = [&](uint64_t i) -> absl::Status {
        if (it->Valid() && it->key() == ChunkKey(name, i)) return absl::OkStatus();
        if (!it->status().ok()) {
          return ToStatus(it->status(), absl::StrCat("reading the checkpoint of ", name));
        }
        return absl::DataLossError(absl::StrCat("checkpoint of ", name, ": chunk ", i, " of ",
                                                chunks, " is missing"));
      };
      // The last chunk first: a size the chunks do not back is not allocated.
      if (chunks > 0) {
        it->Seek(ChunkKey(name, chunks - 1));
        if (absl::Status st = at_chunk(chunks - 1); !st.ok()) return st;
      }
      state.reserve(bytes);
      it->Seek(ChunkKey(name, 0));
      for (uint64_t i = 0; i < chunks; ++i, it->Next()) {
        if (absl::Status st = at_chunk(i); !st.ok()) return st;
        state.append(it->value().data(), it->value().size());
      }
      if (state.size() != bytes) {
        return absl::DataLossError(absl::StrCat("checkpoint of ", name, ": ", state.size(),
                                                " bytes where the record says ", bytes));
      }
    }
    cp.states.emplace(std::move(name), std::move(state));
  }
  if (!r.status().ok()) return r.status();
  if (cp.sequence > LastSequence()) {
    return absl::DataLossError(absl::StrCat("checkpoint at sequence ", cp.sequence,
                                            " is ahead of the log end ", LastSequence()));
  }
  return cp;
}

absl::StatusOr<uint64_t> Store::AppendAudit(AuditRecord record) {
  std::string value;
  core::ByteWriter w(&value);
  w.U8(kAuditFormat);
  w.I64(record.time_ms);
  w.Str(record.who);
  w.Str(record.method);
  w.Str(record.request);
  w.Varint(static_cast<uint64_t>(record.code));
  w.Str(record.message);
  absl::MutexLock lock(&impl_->audit_mu);
  const uint64_t number = impl_->last_audit + 1;
  rocksdb::WriteBatch batch;
  batch.Put(impl_->cf(kAudit), SequenceKey(number), value);
  if (number > kMaxAuditRecords)
    batch.Delete(impl_->cf(kAudit), SequenceKey(number - kMaxAuditRecords));
  if (absl::Status s = ToStatus(impl_->db->Write({}, &batch), "writing an audit record"); !s.ok()) {
    return s;
  }
  impl_->last_audit = number;
  return number;
}

absl::Status Store::ReadAudit(uint64_t from, size_t max, std::vector<AuditRecord>* out) const {
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}, impl_->cf(kAudit)));
  for (it->Seek(SequenceKey(std::max<uint64_t>(from, 1))); it->Valid() && out->size() < max;
       it->Next()) {
    core::ByteReader r(it->value().ToStringView());
    AuditRecord rec;
    rec.number = DecodeSequenceKey(it->key().ToStringView());
    if (r.U8() != kAuditFormat) r.Invalidate();
    rec.time_ms = r.I64();
    rec.who = r.Str();
    rec.method = r.Str();
    rec.request = r.Str();
    rec.code = static_cast<int>(r.Varint());
    rec.message = r.Str();
    if (!r.status().ok()) {
      return absl::DataLossError(
          absl::StrCat("audit record ", rec.number, ": ", r.status().message()));
    }
    out->push_back(std::move(rec));
  }
  return ToStatus(it->status(), "reading the audit records");
}

absl::StatusOr<std::vector<uint64_t>> Store::PendingErasures() const {
  std::vector<uint64_t> pending;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}, impl_->cf(kMeta)));
  const std::string_view prefix = kErasurePrefix;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    pending.push_back(DecodeSequenceKey(it->key().ToStringView().substr(prefix.size())));
  }
  if (absl::Status s = ToStatus(it->status(), "reading the pending erasures"); !s.ok()) return s;
  return pending;
}

absl::Status Store::CompleteErasures(const std::vector<core::Event>& rewritten,
                                     const std::vector<std::string>& dropped_event_ids,
                                     const std::vector<uint64_t>& completed) {
  rocksdb::WriteBatch batch;
  rocksdb::Status s;
  for (const core::Event& e : rewritten) {
    if (s.ok()) s = batch.Put(impl_->cf(kEvents), SequenceKey(e.sequence), core::EncodeEvent(e));
  }
  for (const std::string& id : dropped_event_ids) {
    if (s.ok()) s = batch.Delete(impl_->cf(kEventIds), id);
  }
  for (uint64_t d : completed) {
    if (s.ok()) s = batch.Delete(impl_->cf(kMeta), ErasureKey(d));
  }
  if (s.ok()) s = batch.Put(impl_->cf(kMeta), kCompactionDueKey, "");
  if (!s.ok()) return ToStatus(s, "building the erasure batch");
  return ToStatus(impl_->db->Write(impl_->SyncedWrite(), &batch), "writing the erasure");
}

absl::Status Store::ClearCompactionDue() {
  return ToStatus(impl_->db->Delete(impl_->SyncedWrite(), impl_->cf(kMeta), kCompactionDueKey),
                  "clearing the compaction mark");
}

bool Store::CompactionDue() const {
  std::string value;
  return impl_->db->Get({}, impl_->cf(kMeta), kCompactionDueKey, &value).ok();
}

absl::StatusOr<double> Store::CompactEverything(std::atomic<bool>* cancel) {
  const absl::Time start = absl::Now();
  if (absl::Status s = ToStatus(impl_->db->Flush(rocksdb::FlushOptions(), impl_->cfs), "flushing");
      !s.ok()) {
    return s;
  }
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  options.exclusive_manual_compaction = false;
  options.canceled = cancel;
  for (rocksdb::ColumnFamilyHandle* cf : impl_->cfs) {
    if (absl::Status s = ToStatus(impl_->db->CompactRange(options, cf, nullptr, nullptr),
                                  absl::StrCat("compacting ", cf->GetName()));
        !s.ok()) {
      return s;
    }
  }
  // One more change of the file set, a table file of this record: the
  // MANIFEST is written afresh with the compacted files only.
  rocksdb::Status s = impl_->db->Put(impl_->SyncedWrite(), impl_->cf(kMeta), kLastCompactionKey,
                                     absl::StrCat(absl::ToUnixMillis(absl::Now())));
  if (s.ok()) s = impl_->db->Flush(rocksdb::FlushOptions(), impl_->cf(kMeta));
  if (!s.ok()) return ToStatus(s, "flushing after the compaction");
  return absl::ToDoubleSeconds(absl::Now() - start);
}

absl::StatusOr<uint64_t> Store::Backup(const std::string& folder) {
  rocksdb::Checkpoint* raw = nullptr;
  if (absl::Status s = ToStatus(rocksdb::Checkpoint::Create(impl_->db.get(), &raw), "backup");
      !s.ok()) {
    return s;
  }
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // The log end before the copy: the copy holds at least this much.
  const uint64_t sequence = LastSequence();
  // Flushed first, so that the copy needs no write-ahead log.
  if (absl::Status s = ToStatus(checkpoint->CreateCheckpoint(folder, /*log_size_for_flush=*/0),
                                absl::StrCat("backup to ", folder));
      !s.ok()) {
    return s;
  }
  return sequence;
}

StoreStats Store::Stats() const {
  StoreStats stats;
  for (auto* h : impl_->cfs) {
    uint64_t v = 0;
    if (impl_->db->GetIntProperty(h, "rocksdb.estimate-live-data-size", &v)) {
      stats.live_data_bytes += v;
    }
    if (impl_->db->GetIntProperty(h, "rocksdb.cur-size-all-mem-tables", &v)) {
      stats.live_data_bytes += v;
    }
    if (impl_->db->GetIntProperty(h, "rocksdb.estimate-pending-compaction-bytes", &v)) {
      stats.pending_compaction_bytes += v;
    }
  }
  return stats;
}

}  // namespace mercato::storage
