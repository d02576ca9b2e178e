#include "engine/store/durable.h"

#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/assert.h"
#include "digest/hash.h"

namespace rumor {

namespace {

// The file format (docs/store.md "Durability"): bump on any incompatible change.
constexpr std::string_view kFormat = "rumor-durable-1";
constexpr std::uint8_t kEntryLayout = 1;
constexpr std::size_t kEntryHeader = 1 + 1 + 4 + 8 + 8;  // layout, flags, epoch, hlc, node
constexpr std::size_t kChecksumBytes = 8;
constexpr std::size_t kMapBytesMin = std::size_t{64} << 20;

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

std::string entry_key(std::uint32_t shard, std::string_view key) {
  std::string k;
  k.reserve(2 + key.size());
  k.push_back(static_cast<char>(shard >> 8));  // big-endian: a shard's keys are one range
  k.push_back(static_cast<char>(shard & 0xff));
  k.append(key);
  return k;
}

std::string sync_key(std::uint32_t shard) {
  return "sync/" + entry_key(shard, {}).substr(0, 2);
}

// body + checksum(key, body)
void seal(std::string_view key, std::string& body) {
  put_u64(body, digest::record_checksum(key, body));
}
// The body of a sealed value, or nullopt when the checksum does not match.
std::optional<std::string_view> unseal(std::string_view key, std::string_view sealed) {
  if (sealed.size() < kChecksumBytes) return std::nullopt;
  const std::string_view body = sealed.substr(0, sealed.size() - kChecksumBytes);
  if (get_u64(sealed.data() + body.size()) != digest::record_checksum(key, body)) {
    return std::nullopt;
  }
  return body;
}

std::string_view view(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}
MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

Status lmdb_error(std::string_view what, const std::string& dir, int rc) {
  return Status::error(rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
                                   rc == MDB_PAGE_NOTFOUND
                               ? Code::kMalformed
                               : Code::kIo,
                       std::string(what) + " " + dir + ": " + mdb_strerror(rc));
}

std::string printable(std::string_view key) {
  std::string out;
  for (char c : key.substr(0, 64)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
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
  if (k.size() < 3) return std::nullopt;
  auto body = unseal(k, sealed);
  if (!body || body->size() < kEntryHeader || (*body)[0] != static_cast<char>(kEntryLayout)) {
    return std::nullopt;
  }
  DecodedEntry d;
  d.shard = (static_cast<std::uint32_t>(static_cast<unsigned char>(k[0])) << 8) |
            static_cast<unsigned char>(k[1]);
  d.key = k.substr(2);
  const char* p = body->data();
  d.tombstone = (p[1] & 1) != 0;
  d.epoch = get_u32(p + 2);
  d.version = Version{get_u64(p + 6), get_u64(p + 14)};
  d.value = body->substr(kEntryHeader);
  if (d.version.is_zero() || (d.tombstone && !d.value.empty())) return std::nullopt;
  return d;
}

// Walks every record of both databases, checking checksums; "" when all is well.
std::string walk(MDB_env* env, MDB_txn* txn, unsigned entries, unsigned meta) {
  (void)env;
  for (unsigned dbi : {entries, meta}) {
    MDB_cursor* cur = nullptr;
    if (int rc = mdb_cursor_open(txn, dbi, &cur); rc != 0) return mdb_strerror(rc);
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      const bool ok = dbi == entries ? decode_entry(view(k), view(v)).has_value()
                                     : unseal(view(k), view(v)).has_value();
      if (!ok) {
        mdb_cursor_close(cur);
        return std::string("bad record (checksum or layout) under key '") +
               printable(view(k)) + "' in " + (dbi == entries ? "entries" : "meta");
      }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) return mdb_strerror(rc);
  }
  return {};
}

// In a child process: open read-only and walk. A damaged file may make LMDB read past the
// mapped file (SIGBUS) or follow a bad page pointer (SIGSEGV); the child dies, not the node.
Status verify_in_child(const std::string& dir) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return Status::error(Code::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::error(Code::kIo, std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string msg;
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    unsigned e = 0, m = 0;
    int rc = mdb_env_create(&env);
    if (rc == 0) rc = mdb_env_set_maxdbs(env, 4);
    if (rc == 0) rc = mdb_env_open(env, dir.c_str(), MDB_RDONLY | MDB_NOLOCK, 0600);
    if (rc == 0) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, "entries", 0, &e);
    if (rc == 0) rc = mdb_dbi_open(txn, "meta", 0, &m);
    if (rc != 0) {
      msg = mdb_strerror(rc);
    } else {
      msg = walk(env, txn, e, m);
    }
    if (!msg.empty()) {
      [[maybe_unused]] auto n = ::write(fds[1], msg.data(), msg.size());
    }
    ::_exit(msg.empty() ? 0 : 3);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n > 0) {
      msg.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    return Status::error(Code::kMalformed,
                         "data directory " + dir + " is damaged: reading it crashed (" +
                             strsignal(WTERMSIG(status)) +
                             "); move it aside to start this node empty (it catches up from "
                             "its peers)");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::error(Code::kMalformed,
                         "data directory " + dir + " is damaged: " + msg +
                             "; move it aside to start this node empty (it catches up from "
                             "its peers)");
  }
  return Status::ok();
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

Result<std::unique_ptr<DurableStore>> DurableStore::open(const std::string& dir, bool verify) {
  std::error_code ec;
  if (std::filesystem::create_directories(dir, ec)) {
    // Keys may be kept here (an agent's keyring): the owner only.
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  }
  if (ec) return Status::error(Code::kIo, "data directory " + dir + ": " + ec.message());
  std::unique_ptr<DurableStore> d(new DurableStore());
  d->dir_ = dir;
  d->lock_fd_ = ::open((dir + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd_ < 0) {
    return Status::error(Code::kIo, "data directory " + dir + ": LOCK: " + std::strerror(errno));
  }
  if (::flock(d->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::error(Code::kUnavailable,
                         "data directory " + dir + " is in use by another process");
  }
  struct stat st {};
  const bool exists = ::stat((dir + "/data.mdb").c_str(), &st) == 0;
  if (exists && verify) {
    if (Status s = verify_in_child(dir); !s) return s;
  }
  d->map_bytes_ = std::max<std::size_t>(kMapBytesMin, static_cast<std::size_t>(st.st_size) * 2);
  if (Status s = d->open_env(!exists); !s) return s;
  if (Status s = d->read_identity(); !s) return s;
  return d;
}

DurableStore::~DurableStore() {
  if (env_ != nullptr) mdb_env_close(env_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status DurableStore::open_env(bool create) {
  int rc = mdb_env_create(&env_);
  if (rc == 0) rc = mdb_env_set_maxdbs(env_, 4);
  if (rc == 0) rc = mdb_env_set_mapsize(env_, map_bytes_);
  // MDB_NOTLS: read transactions are not tied to a thread (the persister and the controlling
  // thread take turns). Commits sync unless the mode says off (DurableImpl sets MDB_NOSYNC).
  if (rc == 0) rc = mdb_env_open(env_, dir_.c_str(), MDB_NOTLS, 0600);
  if (rc != 0) return lmdb_error("open data directory", dir_, rc);
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &entries_dbi_);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta_dbi_);
  if (rc == 0) {
    MDB_val k = val("format"), v;
    const int g = mdb_get(txn, meta_dbi_, &k, &v);
    if (g == MDB_NOTFOUND) {
      if (!create) {
        // A data.mdb without our format marker: another program's database.
        MDB_stat ms{};
        mdb_stat(txn, entries_dbi_, &ms);
        if (ms.ms_entries > 0) rc = MDB_INVALID;
      }
      if (rc == 0) {
        std::string body(kFormat);
        seal("format", body);
        MDB_val nv = val(body);
        rc = mdb_put(txn, meta_dbi_, &k, &nv, 0);
      }
    } else if (g == 0) {
      auto body = unseal("format", view(v));
      if (!body || *body != kFormat) {
        mdb_txn_abort(txn);
        return Status::error(Code::kMalformed,
                             "data directory " + dir_ + " has format '" +
                                 printable(body ? *body : std::string_view("?")) +
                                 "', this rumor reads '" + std::string(kFormat) + "'");
      }
    } else {
      rc = g;
    }
  }
  if (rc != 0) {
    if (txn) mdb_txn_abort(txn);
    return lmdb_error("open data directory", dir_, rc);
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return lmdb_error("open data directory", dir_, rc);
  return Status::ok();
}

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
  MDB_txn* txn = nullptr;
  if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return std::nullopt;
  MDB_val k = val(name), v;
  std::optional<std::string> out;
  if (mdb_get(txn, meta_dbi_, &k, &v) == 0) {
    if (auto body = unseal(name, view(v))) out = std::string(*body);
  }
  mdb_txn_abort(txn);
  return out;
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
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn); rc != 0) {
    return lmdb_error("read data directory", dir_, rc);
  }
  MDB_cursor* cur = nullptr;
  if (int rc = mdb_cursor_open(txn, entries_dbi_, &cur); rc != 0) {
    mdb_txn_abort(txn);
    return lmdb_error("read data directory", dir_, rc);
  }
  const std::uint64_t grace = store.config().tombstone_grace_ms;
  Status bad;
  MDB_val k, v;
  int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    auto d = decode_entry(view(k), view(v));
    const std::uint64_t hash = d ? Store::hash_key(d->key) : 0;
    if (!d || d->shard >= store.shard_count() || store.shard_of_hash(hash) != d->shard) {
      bad = Status::error(Code::kMalformed, "data directory " + dir_ + ": bad entry record '" +
                                                printable(view(k).substr(std::min<std::size_t>(2, k.mv_size))) + "'");
      break;
    }
    stats.hlc_max = std::max(stats.hlc_max, d->version.hlc);
    if (d->tombstone && hlc_physical_ms(d->version.hlc) + grace < now_ms) {
      expired_.emplace_back(view(k));
      ++stats.expired_tombstones;
      continue;
    }
    store.shard(d->shard).restore(hash, EntryView{d->key, d->value, d->version, d->tombstone},
                                  d->epoch);
    ++(d->tombstone ? stats.tombstones : stats.entries);
  }
  mdb_cursor_close(cur);
  if (bad.is_ok() && rc != MDB_NOTFOUND) bad = lmdb_error("read data directory", dir_, rc);
  mdb_txn_abort(txn);
  if (!bad) return bad;
  for (std::uint32_t s = 0; s < store.shard_count(); ++s) {
    auto body = get_meta(sync_key(s));
    if (!body) continue;
    if (body->size() != 16) {
      return Status::error(Code::kMalformed, "data directory " + dir_ + ": bad sync record of shard " +
                                                 std::to_string(s));
    }
    store.shard(s).restore_sync_state(
        ShardSyncState{get_u32(body->data()), get_u32(body->data() + 4), get_u64(body->data() + 8)});
  }
  if (identity_) stats.hlc_max = std::max(stats.hlc_max, identity_->hlc);
  for (std::uint32_t o = 0; o < store.owner_count(); ++o) store.hlc(o).restore(stats.hlc_max);
  store.restore_done();
  hlc_high_ = stats.hlc_max;
  return stats;
}

void DurableStore::add(const JournalRecord& r) { pending_.push_back(r); }
void DurableStore::add(JournalRecord&& r) { pending_.push_back(std::move(r)); }

Status DurableStore::erase_shard_except(std::uint32_t shard,
                                        const std::function<bool(std::string_view)>& keep) {
  // Collect first (a read transaction), erase at the next commit in order with the rest.
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn); rc != 0) {
    return lmdb_error("read data directory", dir_, rc);
  }
  MDB_cursor* cur = nullptr;
  if (int rc = mdb_cursor_open(txn, entries_dbi_, &cur); rc != 0) {
    mdb_txn_abort(txn);
    return lmdb_error("read data directory", dir_, rc);
  }
  const std::string prefix = entry_key(shard, {});
  MDB_val k = val(prefix), v;
  int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const std::string_view key = view(k);
    if (key.substr(0, 2) != prefix) break;
    if (!keep(key.substr(2))) {
      JournalRecord r;
      r.kind = JournalRecord::Kind::kErase;
      r.shard = shard;
      r.key.assign(key.substr(2));
      pending_.push_back(std::move(r));
    }
  }
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  return Status::ok();
}

Status DurableStore::write_pending(void* txn_ptr) {
  auto* txn = static_cast<MDB_txn*>(txn_ptr);
  std::string k, body;
  std::uint64_t hlc_high = hlc_high_;
  for (const JournalRecord& r : pending_) {
    int rc = 0;
    switch (r.kind) {
      case JournalRecord::Kind::kPut: {
        k = entry_key(r.shard, r.key);
        body.clear();
        body.push_back(static_cast<char>(kEntryLayout));
        body.push_back(static_cast<char>(r.tombstone ? 1 : 0));
        put_u32(body, r.epoch);
        put_u64(body, r.version.hlc);
        put_u64(body, r.version.node);
        if (!r.tombstone) body.append(r.value);
        seal(k, body);
        MDB_val kv = val(k), vv = val(body);
        rc = mdb_put(txn, entries_dbi_, &kv, &vv, 0);
        hlc_high = std::max(hlc_high, r.version.hlc);
        break;
      }
      case JournalRecord::Kind::kErase: {
        k = entry_key(r.shard, r.key);
        MDB_val kv = val(k);
        rc = mdb_del(txn, entries_dbi_, &kv, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;
        break;
      }
      case JournalRecord::Kind::kSyncState: {
        k = sync_key(r.shard);
        body.clear();
        put_u32(body, r.sync.sync_epoch);
        put_u32(body, r.sync.safe_sync_epoch);
        put_u64(body, r.sync.last_sync_ms);
        seal(k, body);
        MDB_val kv = val(k), vv = val(body);
        rc = mdb_put(txn, meta_dbi_, &kv, &vv, 0);
        break;
      }
      case JournalRecord::Kind::kIncarnation: {
        k = "incarnation";
        body.clear();
        put_u64(body, r.version.hlc);
        seal(k, body);
        MDB_val kv = val(k), vv = val(body);
        rc = mdb_put(txn, meta_dbi_, &kv, &vv, 0);
        break;
      }
    }
    if (rc != 0) return lmdb_error("write data directory", dir_, rc);
  }
  for (const std::string& e : expired_) {
    MDB_val kv = val(e);
    const int rc = mdb_del(txn, entries_dbi_, &kv, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error("write data directory", dir_, rc);
  }
  auto meta_put = [&](std::string_view name, std::string value) {
    seal(name, value);
    MDB_val kv = val(name), vv = val(value);
    return mdb_put(txn, meta_dbi_, &kv, &vv, 0);
  };
  for (auto& [name, value] : pending_meta_) {
    if (int rc = meta_put(name, value); rc != 0) return lmdb_error("write data directory", dir_, rc);
  }
  if (hlc_high > hlc_high_) {
    std::string v;
    put_u64(v, hlc_high);
    if (int rc = meta_put("hlc", v); rc != 0) return lmdb_error("write data directory", dir_, rc);
  }
  hlc_high_ = hlc_high;
  return Status::ok();
}

Status DurableStore::grow() {
  map_bytes_ *= 2;
  const int rc = mdb_env_set_mapsize(env_, map_bytes_);
  if (rc != 0) return lmdb_error("grow the map of", dir_, rc);
  ++map_grows_;
  return Status::ok();
}

Status DurableStore::commit(bool sync) {
  if (pending_.empty() && pending_meta_.empty() && expired_.empty()) return Status::ok();
  // Synced commits let LMDB write the data pages, fsync, then write the meta page and fsync:
  // a crash of the machine then leaves the previous commit or this one, never a torn file.
  // Unsynced ones (kOff) survive a crash of the process only.
  if (int rc = mdb_env_set_flags(env_, MDB_NOSYNC, sync ? 0 : 1); rc != 0) {
    return lmdb_error("configure", dir_, rc);
  }
  const std::uint64_t hlc_before = hlc_high_;
  for (int attempt = 0;; ++attempt) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) return lmdb_error("write data directory", dir_, rc);
    Status s = write_pending(txn);
    if (s) {
      rc = mdb_txn_commit(txn);
      if (rc == 0) break;
      s = lmdb_error("commit to data directory", dir_, rc);
    } else {
      mdb_txn_abort(txn);
    }
    hlc_high_ = hlc_before;
    // A full map ruins the transaction: grow and write the whole batch again.
    if (s.message().find(mdb_strerror(MDB_MAP_FULL)) == std::string::npos || attempt >= 8) {
      return s;
    }
    if (Status g = grow(); !g) return g;
  }
  for (const JournalRecord& r : pending_) {
    ++(r.kind == JournalRecord::Kind::kErase ? erases_written_ : records_written_);
  }
  pending_.clear();
  pending_meta_.clear();
  expired_.clear();
  return Status::ok();
}

std::uint64_t DurableStore::file_bytes() const {
  struct stat st {};
  if (::stat((dir_ + "/data.mdb").c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

// ---- JournalQueues ------------------------------------------------------------------------------

JournalQueues::JournalQueues(std::uint32_t owners, std::size_t depth) {
  for (std::uint32_t o = 0; o < owners; ++o) owners_.push_back(std::make_unique<Owner>(depth));
}

void JournalQueues::push(std::uint32_t owner, JournalRecord&& r) {
  Owner& o = *owners_[owner];
  const std::uint64_t seq = o.produced.load(std::memory_order_relaxed) + 1;
  r.seq = seq;
  if (!o.queue.push(std::move(r))) {
    o.dropped.store(o.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // Release: pairs with take_overflow's acquire exchange.
    o.overflow.store(true, std::memory_order_release);
  }
  // Release: a persister that reads this ticket (take_overflow, then produced_now) also sees
  // the store's change it stands for, so a rewrite starting after that read includes it.
  o.produced.store(seq, std::memory_order_release);
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
  JournalRecord r;
  r.kind = JournalRecord::Kind::kPut;
  r.tombstone = e.tombstone;
  r.shard = shard;
  r.epoch = epoch;
  r.version = e.version;
  r.key.assign(e.key);
  if (!e.tombstone) r.value.assign(e.value);
  push(owner, std::move(r));
}

void JournalQueues::erased(std::uint32_t owner, std::uint32_t shard, std::string_view key) {
  JournalRecord r;
  r.kind = JournalRecord::Kind::kErase;
  r.shard = shard;
  r.key.assign(key);
  push(owner, std::move(r));
}

void JournalQueues::synced(std::uint32_t owner, std::uint32_t shard, const ShardSyncState& s) {
  JournalRecord r;
  r.kind = JournalRecord::Kind::kSyncState;
  r.shard = shard;
  r.sync = s;
  push(owner, std::move(r));
}

void JournalQueues::incarnation(std::uint64_t inc) {
  JournalRecord r;
  r.kind = JournalRecord::Kind::kIncarnation;
  r.version.hlc = inc;
  push(0, std::move(r));  // members run on the home core
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

std::size_t JournalQueues::drain(std::vector<JournalRecord>& out, std::size_t max) {
  std::size_t n = 0;
  for (auto& o : owners_) {
    if (n >= max) break;
    n += o->queue.pop_batch(std::back_inserter(out), max - n);
  }
  return n;
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
