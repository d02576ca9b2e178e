// rumor::Durability (include/rumor/durable.h): a DurableStore and its JournalQueues
// (engine/store/durable.h) attached to a Node, and the persister thread that drains the queues
// into commits. The thread lives here, beside the reactor's, because the node itself never
// starts one.
#include "rumor/durable.h"

#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "base/assert.h"
#include "base/clock.h"
#include "engine/node/internal.h"
#include "engine/store/durable.h"

namespace rumor {

class DurableImpl {
 public:
  DurableImpl(const DurableConfig& config, std::unique_ptr<DurableStore> db)
      : config_(config), db_(std::move(db)), existed_(db_->identity().has_value()) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  }
  ~DurableImpl() {
    stop();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status restore(Node& node, TimeSource& time) {
    Store& store = NodeInternals::store(node);
    const auto& saved = db_->identity();
    if (saved) {
      if (saved->id != node.id()) {
        return Status::error(Code::kInvalidArgument,
                             "data directory " + config_.dir + " belongs to node '" +
                                 saved->name + "' (another id): give each node its own directory");
      }
      if (saved->virtual_shards != store.shard_count()) {
        return Status::error(Code::kInvalidArgument,
                             "data directory " + config_.dir + " was written with virtual_shards " +
                                 std::to_string(saved->virtual_shards) + ", this node has " +
                                 std::to_string(store.shard_count()));
      }
    }
    auto stats = db_->load(store, time.now_ms());
    if (!stats) return stats.status();
    loaded_ = *stats;
    DurableIdentity id;
    id.id = node.id();
    id.name = node.config().name;
    id.virtual_shards = store.shard_count();
    id.incarnation = saved ? saved->incarnation : 0;
    // start() takes an incarnation above this one (and above its start time).
    NodeInternals::members(node).restore_incarnation(id.incarnation);
    db_->set_identity(id);
    if (Status s = db_->commit(true); !s) return s;
    restored_ = true;
    return Status::ok();
  }

  Status start(Node& node) {
    if (!restored_) return Status::error(Code::kInvalidArgument, "restore() before start()");
    if (thread_.joinable()) return Status::error(Code::kInvalidArgument, "already started");
    store_ = &NodeInternals::store(node);
    queues_ = std::make_unique<JournalQueues>(store_->owner_count(), config_.queue_depth);
    queues_->set_waker([this] { ring(); });
    last_seq_.assign(store_->owner_count(), 0);
    store_->set_journal(queues_.get());
    NodeInternals::members(node).set_journal(queues_.get());
    node_ = &node;
    stop_.store(false, std::memory_order_relaxed);
    running_.store(true, std::memory_order_release);
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "rumor-persist");  // for top, perf and gdb
      run();
    });
    return Status::ok();
  }

  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true, std::memory_order_release);
    ring();
    thread_.join();
    store_->set_journal(nullptr);
    NodeInternals::members(*node_).set_journal(nullptr);
  }

  std::uint64_t ticket(std::uint32_t core) const { return queues_ ? queues_->produced(core) : 0; }
  bool durable(std::uint32_t core, std::uint64_t ticket) const {
    return queues_ && queues_->durable(core) >= ticket;
  }

  Status wait_durable(std::uint32_t core, std::uint64_t ticket, std::uint64_t timeout_ms) {
    const std::uint64_t deadline = monotonic_ns() + timeout_ms * 1'000'000ull;
    for (;;) {
      // Read the generation first: a commit after this read changes it and the futex returns.
      const std::uint32_t gen = commit_gen_.load(std::memory_order_acquire);
      if (durable(core, ticket)) return Status::ok();
      if (!running_.load(std::memory_order_acquire)) {
        if (durable(core, ticket)) return Status::ok();  // the last commit made it
        return Status::error(Code::kUnavailable, "durability stopped before the write was synced");
      }
      const std::uint64_t now = monotonic_ns();
      if (now >= deadline) {
        return Status::error(Code::kUnavailable,
                             "write not on disk after " + std::to_string(timeout_ms) + " ms" +
                                 (last_error().empty() ? "" : ": " + last_error()));
      }
      const std::uint64_t left = deadline - now;
      timespec ts{static_cast<time_t>(left / 1'000'000'000ull),
                  static_cast<long>(left % 1'000'000'000ull)};
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&commit_gen_), FUTEX_WAIT_PRIVATE,
                gen, &ts, nullptr, 0);
    }
  }

  void put_meta(std::string_view name, std::string_view value) {
    std::lock_guard<std::mutex> g(meta_mu_);  // not the packet path: admin commands
    meta_in_.emplace_back(std::string(name), std::string(value));
    meta_cache_[std::string(name)] = std::string(value);
    if (!thread_.joinable()) {  // before start or after stop: the next commit takes it
      db_->put_meta("user/" + std::string(name), value);
      meta_in_.clear();
    }
  }

  std::optional<std::string> get_meta(std::string_view name) const {
    {
      std::lock_guard<std::mutex> g(meta_mu_);
      if (auto it = meta_cache_.find(std::string(name)); it != meta_cache_.end()) return it->second;
      if (thread_.joinable()) return std::nullopt;
    }
    return db_->get_meta("user/" + std::string(name));
  }

  DurableCounters counters() const {
    DurableCounters c;
    auto r = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    c.commits = r(commits_);
    c.synced_commits = r(synced_commits_);
    c.records_written = r(records_written_);
    c.erases_written = r(erases_written_);
    c.queue_full = queues_ ? queues_->dropped() : 0;
    c.rewrites = r(rewrites_);
    c.commit_errors = r(commit_errors_);
    c.loaded_entries = loaded_.entries;
    c.loaded_tombstones = loaded_.tombstones;
    c.expired_tombstones = loaded_.expired_tombstones;
    c.file_bytes = r(file_bytes_);
    c.last_commit_us = r(last_commit_us_);
    return c;
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> g(meta_mu_);
    return last_error_;
  }

  const DurableConfig config_;
  std::function<void()> on_commit_;
  std::unique_ptr<DurableStore> db_;
  const bool existed_;

 private:
  void ring() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  // Every shard of `owner`, from memory (lock-free reads), after its queue dropped a record:
  // puts for what memory holds, erases for what the directory holds and memory does not.
  // Returns false when it could not finish (the owner stays marked for another try).
  bool rewrite(std::uint32_t owner) {
    rewrites_.fetch_add(1, std::memory_order_relaxed);
    // Every record up to this ticket is applied in memory (push() stores the ticket before the
    // record or the overflow mark), so the scan below, which starts after, sees its effect.
    const std::uint64_t covered = queues_->produced_now(owner);
    // What is queued goes to disk first (it is older than or equal to what the scan reads), and
    // is committed before the directory is read: an erase decided below must see every put.
    std::vector<std::uint64_t> drained_max(last_seq_.size(), 0);
    drain_into(SIZE_MAX, &drained_max);
    if (Status st = db_->commit(false); !st) {
      note_error(st);
      return false;
    }
    // One pass over memory for all the owner's shards, then one over the directory (a
    // directory iterator sorts the memtable once: one per shard cost a sort each).
    std::vector<std::unordered_set<std::string>> live(store_->shard_count());
    for (std::uint32_t s = owner; s < store_->shard_count(); s += store_->owner_count()) {
      store_->shard(s).scan_with_epoch([&](const Entry& e, std::uint32_t epoch) {
        JournalRecord r;
        r.kind = JournalRecord::Kind::kPut;
        r.shard = s;
        r.tombstone = e.tombstone;
        r.epoch = epoch;
        r.version = e.version;
        r.key = e.key;
        r.value = e.value;
        live[s].insert(e.key);
        db_->add(r);
      });
    }
    if (Status st = db_->erase_entries_except(
            [&](std::uint32_t shard, std::string_view k) {
              return store_->owner_of_shard(shard) != owner ||
                     live[shard].count(std::string(k)) != 0;
            });
        !st) {
      note_error(st);
      return false;
    }
    // Every ticket up to max(covered, the highest drained) is now accounted for, unless a
    // record was dropped since the mark was cleared (then the mark is set again: not yet).
    if (!queues_->overflowed(owner)) {
      last_seq_[owner] = std::max({last_seq_[owner], covered, drained_max[owner]});
    }
    return true;
  }

  // Moves queued records into the pending commit, keeping each owner's contiguous ticket (and,
  // if asked, the highest ticket drained per owner).
  std::size_t drain_into(std::size_t max, std::vector<std::uint64_t>* drained_max = nullptr) {
    // Encoded straight from their queue slots into the pending batch.
    return queues_->visit(
        [&](std::uint32_t o, const JournalRecord& r) {
          // Records of one queue come in ticket order. A gap (a dropped record) stops the
          // owner's ticket until a rewrite covers it.
          if (r.seq == last_seq_[o] + 1) last_seq_[o] = r.seq;
          if (drained_max) (*drained_max)[o] = std::max((*drained_max)[o], r.seq);
          db_->add(r);
        },
        max);
  }

  void note_error(const Status& s) {
    commit_errors_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> g(meta_mu_);
    last_error_ = s.to_string();
  }

  // The persister. kAlways: a synced commit of whatever is queued, as soon as the last one
  // ended (group commit); it sleeps when idle and the first record wakes it. kBatch: one synced
  // commit per interval of everything queued meanwhile; kOff: the same without the sync. Both
  // nap between drains instead of being woken per record (a wake-up is a system call on the
  // writer's core), and commit early when a commit's worth is pending.
  void run() {
    const SyncMode mode = config_.sync;
    const std::uint64_t interval_ns = std::uint64_t{config_.sync_interval_ms} * 1'000'000;
    std::uint64_t next_sync_ns = monotonic_ns() + interval_ns;
    std::uint64_t error_backoff_ns = 0;
    std::vector<std::uint64_t> written(last_seq_.size(), 0);  // committed, maybe not synced
    std::uint64_t stop_deadline_ns = 0;
    for (;;) {
      const bool stopping = stop_.load(std::memory_order_acquire);
      for (std::uint32_t o = 0; o < queues_->owners(); ++o) {
        if (queues_->take_overflow(o) && !rewrite(o)) queues_->mark_overflow(o);
      }
      const std::size_t room = config_.commit_records_max > db_->pending()
                                   ? config_.commit_records_max - db_->pending()
                                   : 0;
      const std::size_t n = room > 0 ? drain_into(room) : 0;
      {
        std::lock_guard<std::mutex> g(meta_mu_);
        for (auto& [k, v] : meta_in_) db_->put_meta("user/" + k, v);
        meta_in_.clear();
      }
      const std::uint64_t now = monotonic_ns();
      const bool interval_due = now >= next_sync_ns || stopping;
      const bool had_work = db_->has_pending();
      // A sync that has something to make durable: records, or earlier unsynced commits.
      const bool sync_due = (mode == SyncMode::kAlways && (had_work || db_->unsynced())) ||
                            (mode == SyncMode::kBatch && interval_due &&
                             (had_work || db_->unsynced()));
      const bool commit_due = mode == SyncMode::kAlways || interval_due ||
                              db_->pending() >= kEarlyCommitRecords;
      if (((had_work && commit_due) || sync_due) && (now >= error_backoff_ns || stopping)) {
        // Tickets this commit covers: taken before it, as their records are in it.
        const std::vector<std::uint64_t> upto = last_seq_;
        const bool sync = sync_due || (stopping && mode != SyncMode::kOff && (had_work || db_->unsynced()));
        const std::uint64_t t0 = monotonic_ns();
        Status s = db_->commit(sync);
        const std::uint64_t t1 = monotonic_ns();
        if (!s) {
          note_error(s);
          error_backoff_ns = t1 + 100'000'000;  // a full disk: try again, do not spin
        } else {
          {
            std::lock_guard<std::mutex> g(meta_mu_);
            last_error_.clear();
          }
          commits_.fetch_add(had_work ? 1 : 0, std::memory_order_relaxed);
          synced_commits_.fetch_add(sync ? 1 : 0, std::memory_order_relaxed);
          last_commit_us_.store((t1 - t0) / 1000, std::memory_order_relaxed);
          records_written_.store(db_->records_written(), std::memory_order_relaxed);
          erases_written_.store(db_->erases_written(), std::memory_order_relaxed);
          written = upto;
          if (sync || mode == SyncMode::kOff) {
            for (std::uint32_t o = 0; o < written.size(); ++o) queues_->publish(o, written[o]);
            wake_waiters();
            if (on_commit_) on_commit_();
          }
          if (interval_due) {
            next_sync_ns = t1 + interval_ns;
            file_bytes_.store(db_->file_bytes(), std::memory_order_relaxed);
          }
        }
      }
      if (stopping && queues_->queued() == 0 && !db_->has_pending()) break;
      // While stopping, a commit that keeps failing (a full disk) must not hold the node's
      // shutdown for long: what is not written is lost, and said (last_error).
      if (stopping) {
        if (stop_deadline_ns == 0) stop_deadline_ns = monotonic_ns() + kStopCommitNs;
        if (monotonic_ns() >= stop_deadline_ns) break;
        error_backoff_ns = 0;
        ::poll(nullptr, 0, 10);  // retry every 10 ms, no longer
        continue;
      }
      if (n > 0 || db_->pending() >= config_.commit_records_max) continue;
      // Nothing queued. kAlways sleeps until a record arrives (the writer rings); the others
      // nap (a queue of 64K records takes ~90 ms to fill at 700K writes/s) or until stop rings.
      // Under kAlways the writers whose writes just became durable write again within
      // microseconds: look for them a little before paying a sleep and a wake-up.
      if (mode == SyncMode::kAlways) {
        const std::uint64_t spin_until = monotonic_ns() + kSpinNs;
        while (queues_->queued() == 0 && monotonic_ns() < spin_until) std::this_thread::yield();
        if (queues_->queued() > 0) continue;
      }
      const bool asleep = mode != SyncMode::kAlways || queues_->prepare_sleep();
      if (asleep) {
        const std::uint64_t now2 = monotonic_ns();
        const std::uint64_t wait_ms =
            mode == SyncMode::kAlways
                ? 1000
                : std::min<std::uint64_t>(kNapMs, (next_sync_ns - std::min(next_sync_ns, now2)) /
                                                          1'000'000 + 1);
        pollfd p{wake_fd_, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(wait_ms));
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd_, &v, sizeof v);
        if (mode == SyncMode::kAlways) queues_->woke();
      }
    }
    // Release: a waiter that sees the persister gone sees every ticket it published.
    running_.store(false, std::memory_order_release);
    wake_waiters();
  }

  // After tickets were published (or the persister ended): every wait_durable looks again.
  void wake_waiters() {
    commit_gen_.fetch_add(1, std::memory_order_release);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&commit_gen_), FUTEX_WAKE_PRIVATE,
              INT_MAX, nullptr, nullptr, 0);
  }

  static constexpr std::size_t kEarlyCommitRecords = 65536;
  static constexpr std::uint64_t kNapMs = 5;
  static constexpr std::uint64_t kSpinNs = 50'000;
  static constexpr std::uint64_t kStopCommitNs = 5'000'000'000;  // stop() gives up after 5 s

  int wake_fd_ = -1;
  Store* store_ = nullptr;
  Node* node_ = nullptr;
  std::unique_ptr<JournalQueues> queues_;
  std::vector<std::uint64_t> last_seq_;  // persister: per owner, the contiguous ticket pending
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};  // the persister runs (wait_durable reads it)
  bool restored_ = false;
  DurableLoadStats loaded_;
  // Bumped (release) after every commit; waiters futex-wait on it.
  std::atomic<std::uint32_t> commit_gen_{0};
  static_assert(sizeof(std::atomic<std::uint32_t>) == 4 &&
                std::atomic<std::uint32_t>::is_always_lock_free);  // a futex word
  mutable std::mutex meta_mu_;
  std::vector<std::pair<std::string, std::string>> meta_in_;
  std::unordered_map<std::string, std::string> meta_cache_;
  std::string last_error_;
  std::atomic<std::uint64_t> commits_{0}, synced_commits_{0}, records_written_{0},
      erases_written_{0}, rewrites_{0}, commit_errors_{0}, file_bytes_{0},
      last_commit_us_{0};
};

// ---- Durability ---------------------------------------------------------------------------------

Result<std::unique_ptr<Durability>> Durability::open(const DurableConfig& config) {
  if (Status s = config.validate(); !s) return s;
  auto db = DurableStore::open(config.dir);
  if (!db) return db.status();
  return std::unique_ptr<Durability>(
      new Durability(std::make_unique<DurableImpl>(config, std::move(db).value())));
}

Durability::Durability(std::unique_ptr<DurableImpl> impl) : impl_(std::move(impl)) {}
Durability::~Durability() = default;
const DurableConfig& Durability::config() const { return impl_->config_; }
bool Durability::existed() const { return impl_->existed_; }
Status Durability::restore(Node& node, TimeSource& time) { return impl_->restore(node, time); }
Status Durability::start(Node& node) { return impl_->start(node); }
void Durability::stop() { impl_->stop(); }
std::uint64_t Durability::ticket(std::uint32_t core) const { return impl_->ticket(core); }
bool Durability::durable(std::uint32_t core, std::uint64_t ticket) const {
  return impl_->durable(core, ticket);
}
Status Durability::wait_durable(std::uint32_t core, std::uint64_t ticket, std::uint64_t timeout_ms) {
  return impl_->wait_durable(core, ticket, timeout_ms);
}
void Durability::set_on_commit(std::function<void()> fn) { impl_->on_commit_ = std::move(fn); }
void Durability::put_meta(std::string_view name, std::string_view value) {
  impl_->put_meta(name, value);
}
std::optional<std::string> Durability::get_meta(std::string_view name) const {
  return impl_->get_meta(name);
}
DurableCounters Durability::counters() const { return impl_->counters(); }
std::string Durability::last_error() const { return impl_->last_error(); }

}  // namespace rumor
