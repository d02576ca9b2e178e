#include "engine/store/durable.h"

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor {

namespace {

// The file format (docs/store.md "Durability"): bump on any incompatible change. One keyspace:
// 'e' + shard (2 bytes, big-endian) + key -> an entry; 'm' + name -> a meta value.
constexpr std::string_view kFormat = "rumor-durable-1";
constexpr std::uint8_t kEntryLayout = 1;
constexpr std::size_t kEntryHeader = 1 + 1 + 4 + 8 + 8;  // layout, flags, epoch, hlc, node
constexpr std::size_t kChecksumBytes = 8;

void put_u32(std::string& s, std::uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void put_u64(std::string& s, std::uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
std::uint32_t get_u32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string shard_prefix(std::uint32_t shard) {
  std::string k(1, 'e');
  k.push_back(static_cast<char>(shard >> 8));  // big-endian: a shard's keys are one range
  k.push_back(static_cast<char>(shard & 0xff));
  return k;
}
std::string entry_key(std::uint32_t shard, std::string_view key) {
  std::string k = shard_prefix(shard);
  k.append(key);
  return k;
}
std::string meta_key(std::string_view name) { return "m" + std::string(name); }
std::string sync_name(std::uint32_t shard) { return "sync/" + shard_prefix(shard).substr(1); }

// body + checksum(key, body): RocksDB checks its blocks; this checks the record itself, moved
// or rewritten as a whole.
void seal(std::string_view key, std::string& body) {
  put_u64(body, digest::record_checksum(key, body));
}
std::optional<std::string_view> unseal(std::string_view key, std::string_view sealed) {
  if (sealed.size() < kChecksumBytes) return std::nullopt;
  const std::string_view body = sealed.substr(0, sealed.size() - kChecksumBytes);
  if (get_u64(sealed.data() + body.size()) != digest::record_checksum(key, body)) {
    return std::nullopt;
  }
  return body;
}

std::string_view view(const rocksdb::Slice& s) { return {s.data(), s.size()}; }
rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }

Status db_error(std::string_view what, const std::string& dir, const rocksdb::Status& st) {
  Code code = Code::kIo;
  if (st.IsCorruption()) code = Code::kMalformed;
  if (st.IsIOError() && st.ToString().find("lock") != std::string::npos) {
    return Status::error(Code::kUnavailable,
                         "data directory " + dir + " is in use by another process (" +
                             st.ToString() + ")");
  }
  std::string msg = std::string(what) + " " + dir + ": " + st.ToString();
  if (code == Code::kMalformed) {
    msg += "; move the directory aside to start this node empty (it catches up from its peers)";
  }
  return Status::error(code, msg);
}

std::string printable(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

struct DecodedEntry {
  std::uint32_t shard = 0;
  std::string_view key, value;
  Version version;
  bool tombstone = false;
  std::uint32_t epoch = 0;
};

std::optional<DecodedEntry> decode_entry(std::string_view k, std::string_view sealed) {
  if (k.size() < 4 || k[0] != 'e') return std::nullopt;
  auto body = unseal(k, sealed);
  if (!body || body->size() < kEntryHeader || (*body)[0] != static_cast<char>(kEntryLayout)) {
    return std::nullopt;
  }
  DecodedEntry d;
  d.shard = (static_cast<std::uint32_t>(static_cast<unsigned char>(k[1])) << 8) |
            static_cast<unsigned char>(k[2]);
  d.key = k.substr(3);
  const char* p = body->data();
  d.tombstone = (p[1] & 1) != 0;
  d.epoch = get_u32(p + 2);
  d.version = Version{get_u64(p + 6), get_u64(p + 14)};
  d.value = body->substr(kEntryHeader);
  if (d.version.is_zero() || (d.tombstone && !d.value.empty())) return std::nullopt;
  return d;
}

}  // namespace

std::string_view sync_mode_name(SyncMode m) {
  switch (m) {
    case SyncMode::kOff: return "off";
    case SyncMode::kBatch: return "batch";
    case SyncMode::kAlways: return "always";
  }
  return "?";
}

Result<SyncMode> parse_sync_mode(std::string_view text) {
  if (text == "off") return SyncMode::kOff;
  if (text == "batch") return SyncMode::kBatch;
  if (text == "always") return SyncMode::kAlways;
  return Status::error(Code::kInvalidArgument,
                       "sync mode '" + std::string(text) + "': expected always, batch or off");
}

Status DurableConfig::validate() const {
  if (dir.empty()) return Status::error(Code::kInvalidArgument, "durable dir is empty");
  if (sync_interval_ms == 0 || sync_interval_ms > 60'000) {
    return Status::error(Code::kInvalidArgument, "sync_interval_ms must be 1..60000");
  }
  if (queue_depth < 2 || (queue_depth & (queue_depth - 1)) != 0) {
    return Status::error(Code::kInvalidArgument, "durable queue_depth must be a power of two");
  }
  if (commit_records_max == 0) {
    return Status::error(Code::kInvalidArgument, "commit_records_max must be at least 1");
  }
  return Status::ok();
}

// ---- DurableStore -------------------------------------------------------------------------------

Result<std::unique_ptr<DurableStore>> DurableStore::open(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    // Keys may be kept here (an agent's keyring): the owner only.
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  if (ec) return Status::error(Code::kIo, "data directory " + dir + ": " + ec.message());
  std::unique_ptr<DurableStore> d(new DurableStore());
  d->dir_ = dir;
  rocksdb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  // A crash may tear the log's last record: that tail is dropped. Damage anywhere else is an
  // error, not a silent stop of the replay (the default, kPointInTimeRecovery, would load the
  // commits before the damage and lose the rest without a word).
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  // Small machines: one flush and one compaction thread beside the reactors, and a bounded
  // memtable; entries are small and random, so no compression (CPU on the write path).
  o.max_background_jobs = 2;
  o.write_buffer_size = 64u << 20;
  o.compaction_style = rocksdb::kCompactionStyleUniversal;
  // The directory is written all the time and read at start only: a vector memtable appends
  // (a skiplist insert of a random key cost ~35% of the persister: perf, store/durable/write/
  // batch) and sorts once at flush.
  o.memtable_factory.reset(new rocksdb::VectorRepFactory());
  o.allow_concurrent_memtable_write = false;
  o.compression = rocksdb::kNoCompression;
  o.keep_log_file_num = 2;
  o.max_log_file_size = 1u << 20;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  rocksdb::BlockBasedTableOptions t;
  t.cache_index_and_filter_blocks = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* db = nullptr;
  const rocksdb::Status st = rocksdb::DB::Open(o, dir, &db);
  if (!st.ok()) return db_error("open data directory", dir, st);
  d->db_.reset(db);
  // The format marker: written into a new directory, checked in an old one.
  auto format = d->get_meta("format");
  if (!format) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    if (it->Valid()) {
      return Status::error(Code::kMalformed, "data directory " + dir +
                                                 " holds a database that rumor did not write");
    }
    d->put_meta("format", kFormat);
    if (Status s = d->commit(true); !s) return s;
  } else if (*format != kFormat) {
    return Status::error(Code::kMalformed, "data directory " + dir + " has format '" +
                                               printable(*format) + "', this rumor reads '" +
                                               std::string(kFormat) + "'");
  }
  if (Status s = d->read_identity(); !s) return s;
  return d;
}

DurableStore::~DurableStore() = default;

Status DurableStore::read_identity() {
  auto id = get_meta("identity");
  if (!id) return Status::ok();
  if (id->size() < 12) {
    return Status::error(Code::kMalformed, "data directory " + dir_ + ": identity record is short");
  }
  DurableIdentity d;
  d.id = get_u64(id->data());
  d.virtual_shards = get_u32(id->data() + 8);
  d.name = id->substr(12);
  if (auto inc = get_meta("incarnation"); inc && inc->size() == 8) d.incarnation = get_u64(inc->data());
  if (auto h = get_meta("hlc"); h && h->size() == 8) d.hlc = get_u64(h->data());
  identity_ = d;
  return Status::ok();
}

std::optional<std::string> DurableStore::get_meta(std::string_view name) const {
  for (auto it = pending_meta_.rbegin(); it != pending_meta_.rend(); ++it) {
    if (it->first == name) return it->second;
  }
  const std::string k = meta_key(name);
  std::string v;
  if (!db_->Get(rocksdb::ReadOptions(), slice(k), &v).ok()) return std::nullopt;
  if (auto body = unseal(k, v)) return std::string(*body);
  return std::nullopt;
}

void DurableStore::put_meta(std::string_view name, std::string_view value) {
  pending_meta_.emplace_back(std::string(name), std::string(value));
}

void DurableStore::set_identity(const DurableIdentity& id) {
  std::string body;
  put_u64(body, id.id);
  put_u32(body, id.virtual_shards);
  body.append(id.name);
  put_meta("identity", body);
  std::string inc;
  put_u64(inc, id.incarnation);
  put_meta("incarnation", inc);
  identity_ = id;
}

Result<DurableLoadStats> DurableStore::load(Store& store, std::uint64_t now_ms) {
  DurableLoadStats stats;
  const std::uint64_t grace = store.config().tombstone_grace_ms;
  rocksdb::ReadOptions ro;
  ro.verify_checksums = true;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek("e"); it->Valid() && it->key().starts_with("e"); it->Next()) {
    const std::string_view k = view(it->key());
    auto d = decode_entry(k, view(it->value()));
    const std::uint64_t hash = d ? Store::hash_key(d->key) : 0;
    if (!d || d->shard >= store.shard_count() || store.shard_of_hash(hash) != d->shard) {
      return Status::error(Code::kMalformed,
                           "data directory " + dir_ + ": bad entry record '" +
                               printable(k.substr(std::min<std::size_t>(3, k.size()))) +
                               "' (checksum or layout); move the directory aside to start this "
                               "node empty (it catches up from its peers)");
    }
    stats.hlc_max = std::max(stats.hlc_max, d->version.hlc);
    if (d->tombstone && hlc_physical_ms(d->version.hlc) + grace < now_ms) {
      expired_.emplace_back(k);
      ++stats.expired_tombstones;
      continue;
    }
    store.shard(d->shard).restore(hash, EntryView{d->key, d->value, d->version, d->tombstone},
                                  d->epoch);
    ++(d->tombstone ? stats.tombstones : stats.entries);
  }
  if (!it->status().ok()) return db_error("read data directory", dir_, it->status());
  for (std::uint32_t s = 0; s < store.shard_count(); ++s) {
    auto body = get_meta(sync_name(s));
    if (!body) continue;
    if (body->size() != 16) {
      return Status::error(Code::kMalformed, "data directory " + dir_ +
                                                 ": bad sync record of shard " + std::to_string(s));
    }
    store.shard(s).restore_sync_state(ShardSyncState{
        get_u32(body->data()), get_u32(body->data() + 4), get_u64(body->data() + 8)});
  }
  if (identity_) stats.hlc_max = std::max(stats.hlc_max, identity_->hlc);
  for (std::uint32_t o = 0; o < store.owner_count(); ++o) store.hlc(o).restore(stats.hlc_max);
  store.restore_done();
  hlc_high_ = stats.hlc_max;
  return stats;
}

void DurableStore::add(const JournalRecord& r) {
  // Encoded into the pending write batch at once: no copy of the record is kept.
  if (!batch_) batch_ = std::make_unique<rocksdb::WriteBatch>();
  switch (r.kind) {
    case JournalRecord::Kind::kPut:
      key_ = entry_key(r.shard, r.key);
      body_.clear();
      body_.push_back(static_cast<char>(kEntryLayout));
      body_.push_back(static_cast<char>(r.tombstone ? 1 : 0));
      put_u32(body_, r.epoch);
      put_u64(body_, r.version.hlc);
      put_u64(body_, r.version.node);
      if (!r.tombstone) body_.append(r.value);
      seal(key_, body_);
      batch_->Put(slice(key_), slice(body_));
      hlc_pending_ = std::max(hlc_pending_, r.version.hlc);
      ++pending_puts_;
      break;
    case JournalRecord::Kind::kErase:
      key_ = entry_key(r.shard, r.key);
      batch_->Delete(slice(key_));
      ++pending_erases_;
      break;
    case JournalRecord::Kind::kSyncState:
      body_.clear();
      put_u32(body_, r.sync.sync_epoch);
      put_u32(body_, r.sync.safe_sync_epoch);
      put_u64(body_, r.sync.last_sync_ms);
      pending_meta_.emplace_back(sync_name(r.shard), body_);
      break;
    case JournalRecord::Kind::kIncarnation:
      body_.clear();
      put_u64(body_, r.version.hlc);
      pending_meta_.emplace_back("incarnation", body_);
      break;
  }
}

Status DurableStore::erase_entries_except(
    const std::function<bool(std::uint32_t, std::string_view)>& keep) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  JournalRecord r;
  r.kind = JournalRecord::Kind::kErase;
  for (it->Seek("e"); it->Valid() && it->key().starts_with("e"); it->Next()) {
    const std::string_view k = view(it->key());
    if (k.size() < 3) continue;
    const std::uint32_t shard = (static_cast<std::uint32_t>(static_cast<unsigned char>(k[1])) << 8) |
                                static_cast<unsigned char>(k[2]);
    if (keep(shard, k.substr(3))) continue;
    r.shard = shard;
    r.key.assign(k.substr(3));
    add(r);  // at the next commit, in order with the rest
  }
  if (!it->status().ok()) return db_error("read data directory", dir_, it->status());
  return Status::ok();
}

Status DurableStore::commit(bool sync) {
  if (pending() == 0 && pending_meta_.empty() && expired_.empty()) {
    if (!sync || !unsynced_) return Status::ok();
    // Earlier unsynced writes (kBatch between its syncs): make them durable now.
    const rocksdb::Status st = db_->SyncWAL();
    if (!st.ok()) return db_error("sync data directory", dir_, st);
    unsynced_ = false;
    return Status::ok();
  }
  // The batch as it will be written; kept as it was on failure, so the next commit retries it.
  rocksdb::WriteBatch batch = batch_ ? *batch_ : rocksdb::WriteBatch();
  for (const std::string& e : expired_) batch.Delete(slice(e));
  const std::uint64_t hlc_high = std::max(hlc_high_, hlc_pending_);
  auto meta_put = [&](std::string_view name, std::string value) {
    key_ = meta_key(name);
    seal(key_, value);
    batch.Put(slice(key_), slice(value));
  };
  for (auto& [name, value] : pending_meta_) meta_put(name, value);
  if (hlc_high > hlc_high_) {
    std::string v;
    put_u64(v, hlc_high);
    meta_put("hlc", std::move(v));
  }
  rocksdb::WriteOptions wo;
  // A synced write also syncs every unsynced one before it: the log is one file, in order.
  wo.sync = sync;
  const rocksdb::Status st = db_->Write(wo, &batch);
  if (!st.ok()) return db_error("write data directory", dir_, st);
  unsynced_ = !sync;
  hlc_high_ = hlc_high;
  records_written_ += pending_puts_;
  erases_written_ += pending_erases_;
  pending_puts_ = pending_erases_ = 0;
  hlc_pending_ = 0;
  if (batch_) batch_->Clear();
  pending_meta_.clear();
  expired_.clear();
  return Status::ok();
}

std::uint64_t DurableStore::file_bytes() const {
  std::uint64_t sst = 0, wal = 0;
  db_->GetIntProperty("rocksdb.live-sst-files-size", &sst);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    if (e.path().extension() == ".log") wal += e.file_size(ec);
  }
  return sst + wal;
}

// ---- JournalQueues ------------------------------------------------------------------------------

JournalQueues::JournalQueues(std::uint32_t owners, std::size_t depth) {
  for (std::uint32_t o = 0; o < owners; ++o) owners_.push_back(std::make_unique<Owner>(depth));
}

template <typename Fill>
void JournalQueues::push(std::uint32_t owner, Fill&& fill) {
  Owner& o = *owners_[owner];
  const std::uint64_t seq = o.produced.load(std::memory_order_relaxed) + 1;
  // The ticket first (release), then the record or the mark: a persister that sees either
  // (acquire on the queue's tail, or on the mark) reads a ticket at least this one, and the
  // store's change it stands for, already applied, is visible to a rewrite that starts after.
  o.produced.store(seq, std::memory_order_release);
  // In place: the slot's strings keep their capacity from the record before, so a steady
  // stream of changes allocates nothing on the owner's core.
  const bool queued = o.queue.push_in_place([&](JournalRecord& r) {
    fill(r);
    r.seq = seq;
  });
  if (!queued) {
    o.dropped.store(o.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    o.overflow.store(true, std::memory_order_release);  // see take_overflow
  }
  // Dekker with prepare_sleep(): our push, then their flag; their flag, then our queues. The
  // fences make sure at least one side sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) &&
      sleeping_.exchange(false, std::memory_order_relaxed) && waker_) {
    waker_();
  }
}

void JournalQueues::applied(std::uint32_t owner, std::uint32_t shard, const EntryView& e,
                            std::uint32_t epoch) {
  push(owner, [&](JournalRecord& r) {
    r.kind = JournalRecord::Kind::kPut;
    r.tombstone = e.tombstone;
    r.shard = shard;
    r.epoch = epoch;
    r.version = e.version;
    r.key.assign(e.key);
    r.value.assign(e.tombstone ? std::string_view() : e.value);
  });
}

void JournalQueues::erased(std::uint32_t owner, std::uint32_t shard, std::string_view key) {
  push(owner, [&](JournalRecord& r) {
    r.kind = JournalRecord::Kind::kErase;
    r.shard = shard;
    r.key.assign(key);
    r.value.clear();
  });
}

void JournalQueues::synced(std::uint32_t owner, std::uint32_t shard, const ShardSyncState& s) {
  push(owner, [&](JournalRecord& r) {
    r.kind = JournalRecord::Kind::kSyncState;
    r.shard = shard;
    r.sync = s;
    r.key.clear();
    r.value.clear();
  });
}

void JournalQueues::incarnation(std::uint64_t inc) {
  push(0, [&](JournalRecord& r) {  // members run on the home core
    r.kind = JournalRecord::Kind::kIncarnation;
    r.version = Version{inc, 0};
    r.key.clear();
    r.value.clear();
  });
}

bool JournalQueues::full(std::uint32_t owner) const {
  // size_approx() is at least the true size on the producer side: never an overestimate of room.
  const SpscQueue<JournalRecord>& q = owners_[owner]->queue;
  return q.size_approx() + 2 > q.capacity();
}

std::uint64_t JournalQueues::produced(std::uint32_t owner) const {
  return owners_[owner]->produced.load(std::memory_order_relaxed);  // the owner's own word
}

std::uint64_t JournalQueues::produced_now(std::uint32_t owner) const {
  return owners_[owner]->produced.load(std::memory_order_acquire);  // see push()
}

bool JournalQueues::prepare_sleep() {
  sleeping_.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // see push()
  if (queued() == 0) return true;
  sleeping_.store(false, std::memory_order_relaxed);
  return false;
}

std::size_t JournalQueues::queued() const {
  std::size_t n = 0;
  for (auto& o : owners_) n += o->queue.size_approx();
  return n;
}

bool JournalQueues::take_overflow(std::uint32_t owner) {
  // Acquire: pairs with the release in push(); the drops it marks happened before.
  return owners_[owner]->overflow.exchange(false, std::memory_order_acq_rel);
}

void JournalQueues::publish(std::uint32_t owner, std::uint64_t seq) {
  auto& d = owners_[owner]->durable;
  if (seq <= d.load(std::memory_order_relaxed)) return;
  d.store(seq, std::memory_order_release);  // waiters acquire: everything before is on disk
  d.notify_all();
}

std::uint64_t JournalQueues::durable(std::uint32_t owner) const {
  return owners_[owner]->durable.load(std::memory_order_acquire);
}

std::atomic<std::uint64_t>& JournalQueues::durable_word(std::uint32_t owner) {
  return owners_[owner]->durable;
}

std::uint64_t JournalQueues::dropped() const {
  std::uint64_t n = 0;
  for (auto& o : owners_) n += o->dropped.load(std::memory_order_relaxed);
  return n;
}

}  // namespace rumor
