#include "tools/sim_explore.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include <stdlib.h>

#include <filesystem>

#include "base/clock.h"
#include "base/rng.h"
#include "engine/node/internal.h"
#include "engine/sim/sim_cluster.h"
#include "engine/store/durable.h"
#include "tools/agent_config.h"

namespace rumor::tools {
namespace {

struct Accepted {
  std::string key;
  Version version;
  std::size_t writer = 0;
  bool deleted = false;
  bool safe = true;  // false: its writer crashed before any other running node held it
};

class Run {
 public:
  Run(std::uint64_t seed, const ExploreOptions& o) : r_(seed * 0x9e3779b97f4a7c15ull + 1) {
    n_ = 3 + static_cast<std::size_t>(r_.below(std::max<std::size_t>(o.max_nodes, 3) - 2));
    SimCluster::Options opt;
    opt.nodes = n_;
    opt.seed = seed;
    opt.node = NodeConfig::local();
    if (!o.overrides.empty()) {
      AgentConfig ac;
      ac.node = opt.node;
      for (const std::string& ov : o.overrides) (void)apply_override(ac, ov);  // checked before
      opt.node = ac.node;
    }
    skip_ = o.skip_faults;
    // At least two seeds, so a seed that restarts has another to join through; seeds keep their
    // addresses (they are what every node is configured with: stable names or addresses).
    opt.seeds = 2 + static_cast<std::size_t>(r_.below(2));
    seeds_ = opt.seeds;
    base_.latency_ns = 500'000 + r_.below(2'000'000);
    base_.jitter_ns = r_.below(2'000'000);
    base_.duplicate = r_.below(3) == 0 ? 0.02 : 0.0;
    base_.reorder = r_.below(3) == 0 ? 0.05 : 0.0;
    base_.reorder_delay_ns = 3'000'000;
    base_.loss = r_.below(2) == 0 ? 0.0 : 0.02 * r_.uniform();
    opt.net.link = base_;
    for (std::size_t i = 0; i < n_; ++i) {
      skew_.push_back(static_cast<std::int64_t>(r_.below(4001)) - 2000);
    }
    opt.skew_ms = skew_;
    // A third of the seeds run sealed (encryption `require`, one shared key), a third with some
    // nodes on two owner cores (encryption needs one core per node for now), the rest plain.
    const std::uint64_t flavour = r_.below(3);
    std::string flavour_text = "plaintext";
    if (flavour == 0) {
      std::string key(32, '\0');
      for (char& ch : key) ch = static_cast<char>(r_.next());
      opt.configure = [key](std::size_t, NodeConfig& nc) {
        nc.keys = {key};
        nc.encryption = EncryptionMode::kRequire;
      };
      flavour_text = "sealed (require)";
    } else if (flavour == 1) {
      std::size_t multi = 0;
      for (std::size_t i = 0; i < n_; ++i) {
        opt.cores.push_back(r_.below(2) == 0 ? 2 : 1);
        multi += opt.cores.back() == 2;
      }
      flavour_text = fmt::format("{} node(s) on 2 cores", multi);
    }
    keys_ = 4 + static_cast<std::size_t>(r_.below(60));
    // A third of the seeds give every node a data directory (docs/store.md "Durability"): a
    // crashed node restarts from it. Drawn from a stream of its own, so the fault schedule of a
    // seed is the same with or without.
    Rng disk_rng(seed ^ 0x6469'736b'6469'736bull);  // "diskdisk"
    if (disk_rng.below(3) == 0) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "rumor-explore-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) != nullptr) {
        disk_root_ = tmpl;
        disks_.resize(n_);
        flavour_text += ", data directories";
      }
    }
    opt.on_create = [this](std::size_t i, Node& node) {
      if (!disks_.empty()) attach_disk(i, node);
      // Every death any node declares or hears of, for the false-death check.
      node.on_membership([this, i](const MembershipEvent& e) {
        if (e.member.state == MemberState::kDead && e.previous != MemberState::kDead) {
          deaths_.push_back(Death{i, e.member.id, e.member.incarnation});
        }
      });
    };
    cluster_ = std::make_unique<SimCluster>(opt);
    say(fmt::format("{} nodes, {} seed(s), {}, {} keys, link latency {:.1f} ms + jitter {:.1f} "
                    "ms, loss {:.1f}%, duplicate {:.0f}%, reorder {:.0f}%",
                    n_, opt.seeds, flavour_text, keys_, base_.latency_ns / 1e6,
                    base_.jitter_ns / 1e6, base_.loss * 100, base_.duplicate * 100,
                    base_.reorder * 100));
  }

  // The whole run; returns the failure, empty when every invariant held.
  std::string execute() {
    SimCluster& c = *cluster_;
    c.start_all();
    if (!c.run_until([&] { return membership_ok(nullptr); }, 30'000, 50)) {
      std::string why;
      membership_ok(&why);
      return "the cluster did not form on the starting network: " + why;
    }
    const std::uint64_t phase_ms = 10'000 + r_.below(20'000);
    say(fmt::format("formed at {} ms; faults for {} ms", elapsed_ms(), phase_ms));
    const std::uint64_t end = elapsed_ms() + phase_ms;
    while (elapsed_ms() < end) {
      end_due_faults();
      const std::uint64_t roll = r_.below(100);
      if (roll < 55) {
        for (std::uint64_t k = 1 + r_.below(4); k > 0; --k) write();
      } else if (roll < 63) {
        start_fault();
      }
      run_slice(20 + r_.below(180));
      if (!disk_error_.empty()) return "data directory: " + disk_error_;
    }
    heal();
    const std::uint64_t healed = elapsed_ms();
    if (!c.run_until([&] { return converged(nullptr); }, 120'000, 100)) {
      std::string why;
      converged(&why);
      return fmt::format("not converged {} ms after healing: {}\n{}", elapsed_ms() - healed, why,
                         views());
    }
    heal_ms_ = elapsed_ms() - healed;
    say(fmt::format("converged {} ms after healing; {} writes accepted ({} unsafe: writer "
                    "crashed first)",
                    elapsed_ms() - healed, accepted_.size(),
                    std::count_if(accepted_.begin(), accepted_.end(),
                                  [](const Accepted& a) { return !a.safe; })));
    // No false deaths: healed, on the base network (loss up to 2%), no running node may be
    // declared dead (by anyone, at its current incarnation) for a while. Suspicions may come
    // and go (a lost ack); a death is what a false alarm costs an application.
    const std::uint64_t suspicions = suspicions_raised();
    deaths_.clear();
    c.run_for(kQuietMs);
    std::map<NodeId, std::size_t> index;
    for (std::size_t i = 0; i < n_; ++i) index[c.node(i).id()] = i;
    for (const Death& d : deaths_) {
      auto it = index.find(d.member);
      if (it == index.end() || !live(it->second)) continue;  // a crashed node: rightly dead
      const std::uint64_t now_inc = c.node(it->second).members()[0].incarnation;
      if (d.incarnation < now_inc) continue;  // an old instance of a restarted node
      return fmt::format("false death: node {} (running, incarnation {}) was declared dead, as "
                         "node {} heard, within {} ms after convergence with nothing failing\n{}",
                         it->second, d.incarnation, d.observer, kQuietMs, views());
    }
    say(fmt::format("quiet for {} ms: no deaths declared, {} suspicions (all refuted)", kQuietMs,
                    suspicions_raised() - suspicions));
    return {};
  }

  ~Run() {
    cluster_.reset();
    disks_.clear();
    std::error_code ec;
    if (!disk_root_.empty()) std::filesystem::remove_all(disk_root_, ec);
  }

  const std::string& log() const { return log_; }
  std::size_t faults_drawn() const { return drawn_; }
  std::uint64_t heal_ms() const { return heal_ms_; }
  std::uint64_t events() const { return cluster_->events(); }

 private:
  std::uint64_t elapsed_ms() { return cluster_->now_ms() - SimCluster::kEpochMs; }
  void say(const std::string& line) { log_ += fmt::format("  [{:>6} ms] {}\n", cluster_ ? elapsed_ms() : 0, line); }

  // ---- data directories ----
  // A node made (at the start, or restarting after a crash) with its directory: what it holds
  // is loaded, and every change from now on journaled. The journal is committed at the end of
  // every slice of simulated time and after every write (as `--sync always` acknowledges), so a
  // crash, which comes between slices, loses nothing the node had applied.
  void attach_disk(std::size_t i, Node& node) {
    Disk& d = disks_[i];
    if (!d.db) {
      auto db = DurableStore::open(disk_root_ + "/" + std::to_string(i));
      if (!db) {
        disk_error_ = db.status().to_string();
        return;
      }
      d.db = std::move(db).value();
    }
    Store& store = NodeInternals::store(node);
    const std::uint64_t now = cluster_ ? cluster_->now_ms() : SimCluster::kEpochMs;
    auto loaded = d.db->load(store, now);
    if (!loaded) {
      disk_error_ = loaded.status().to_string();
      return;
    }
    d.loaded += loaded->entries + loaded->tombstones;
    const std::uint64_t inc = d.db->identity() ? d.db->identity()->incarnation : 0;
    NodeInternals::members(node).restore_incarnation(inc);
    d.db->set_identity(DurableIdentity{node.id(), node.config().name, inc, 0,
                                       store.shard_count()});
    d.journal = std::make_unique<JournalQueues>(store.owner_count(), 1u << 16);
    store.set_journal(d.journal.get());
    NodeInternals::members(node).set_journal(d.journal.get());
  }
  void persist(std::size_t i) {
    Disk& d = disks_[i];
    if (!d.journal || !live(i)) return;
    d.journal->visit([&](std::uint32_t, const JournalRecord& r) { d.db->add(r); }, SIZE_MAX);
    // A simulated crash is a crash of the process: unsynced commits survive it.
    if (Status s = d.db->commit(false); !s) disk_error_ = s.to_string();
    if (d.journal->dropped() > 0) disk_error_ = "a journal queue overflowed in the simulator";
  }
  void persist_all() {
    for (std::size_t i = 0; i < disks_.size(); ++i) persist(i);
  }
  void run_slice(std::uint64_t ms) {
    cluster_->run_for(ms);
    persist_all();
  }

  bool live(std::size_t i) const { return !cluster_->crashed(i); }
  std::size_t live_count() const {
    std::size_t k = 0;
    for (std::size_t i = 0; i < n_; ++i) k += live(i);
    return k;
  }
  std::size_t random_live() {
    for (;;) {
      const std::size_t i = r_.below(n_);
      if (live(i)) return i;
    }
  }

  void write() { write_on(random_live()); }
  void write_on(std::size_t i) {
    const std::string key = fmt::format("k{}", r_.below(keys_));
    const bool del = r_.below(8) == 0;
    SimCluster& c = *cluster_;
    const Status s = del ? c.node(i).del(key)
                         : c.node(i).set(key, fmt::format("v{}-{}", i, ++writes_));
    if (!s) return;  // refused (a bounded queue, say): not accepted, nothing to check
    if (!disks_.empty()) persist(i);  // acknowledged once on disk
    auto e = c.node(i).get_entry(key);
    if (!e) return;
    accepted_.push_back(Accepted{key, e->version, i, e->deleted, true});
  }

  // ---- faults ----
  enum class Kind { kLoss, kPartition, kOneWay, kPause, kClock, kCrash };
  struct Fault {
    Kind kind;
    std::uint64_t until_ms;
    std::size_t node = 0;
    bool restart = false, new_address = false;
  };

  void start_fault() {
    SimCluster& c = *cluster_;
    const std::uint64_t now = elapsed_ms();
    const std::uint64_t len = 300 + r_.below(4700);
    const std::size_t index = drawn_++;
    const std::uint64_t kind = r_.below(6);
    if (skip_.count(index)) {
      // Left out (--skip-faults, or the minimiser trying without it): drawn, not applied.
      say(fmt::format("fault #{} left out", index));
      return;
    }
    const std::string tag = fmt::format("fault #{}: ", index);
    switch (kind) {
      case 0: {  // a loss burst
        if (net_fault_) return;
        io::LinkConfig l = base_;
        l.loss = 0.2 + 0.7 * r_.uniform();
        c.net().set_default_link(l);
        faults_.push_back({Kind::kLoss, now + len});
        net_fault_ = true;
        say(tag + fmt::format("loss {:.0f}% for {} ms", l.loss * 100, len));
        break;
      }
      case 1:
      case 2: {  // a partition, symmetric or one-way
        if (net_fault_) return;
        std::vector<io::NodeId> side;
        std::string names;
        for (std::size_t i = 0; i < n_; ++i) {
          if (r_.below(2) == 0) {
            side.push_back(c.net_id(i));
            names += fmt::format(" {}", i);
          }
        }
        if (side.empty() || side.size() == n_) return;
        const bool one_way = r_.below(2) == 0;
        if (one_way) {
          for (io::NodeId id : side) c.net().set_group(id, 1);
          c.net().cut_groups(1, 0);
        } else {
          c.net().partition(side);
        }
        faults_.push_back({one_way ? Kind::kOneWay : Kind::kPartition, now + len});
        net_fault_ = true;
        say(tag + fmt::format("{} partition of{} for {} ms", one_way ? "one-way (they cannot send)" : "symmetric",
                        names, len));
        break;
      }
      case 3: {  // a paused node (a long GC, SIGSTOP)
        const std::size_t i = random_live();
        if (paused_.count(i)) return;
        c.pause(i);
        paused_.insert(i);
        faults_.push_back({Kind::kPause, now + len, i});
        say(tag + fmt::format("node {} paused for {} ms", i, len));
        break;
      }
      case 4: {  // a clock jump within the allowed skew
        const std::size_t i = random_live();
        skew_[i] += static_cast<std::int64_t>(r_.below(6001)) - 3000;
        skew_[i] = std::clamp<std::int64_t>(skew_[i], -10'000, 10'000);
        c.set_skew(i, skew_[i]);
        say(tag + fmt::format("node {}'s clock jumps to skew {} ms", i, skew_[i]));
        break;
      }
      case 5: {  // a crash, with or without a restart
        if (live_count() <= 2) return;
        const std::size_t i = random_live();
        if (paused_.count(i)) return;
        // Seeds come back (a node whose every seed is gone cannot rejoin, in rumor as in
        // memberlist; an operator replaces a seed rather than losing all of them).
        const bool restart = i < seeds_ || r_.below(3) != 0;
        // A node that restarts from its data directory owes everything it had applied: its
        // acknowledged writes stay in the oracle. Otherwise what it had not passed on dies.
        // With directories, the node often acknowledges writes the instant before it dies, so
        // that only its disk holds them.
        if (!disks_.empty() && restart) {
          for (std::uint64_t k = r_.below(2) == 0 ? 1 + r_.below(3) : 0; k > 0; --k) {
            write_on(i);
          }
        }
        if (disks_.empty() || !restart) mark_unsafe_writes_of(i);
        c.crash(i);
        const bool moved = restart && i >= seeds_ && r_.below(4) == 0;
        if (restart) faults_.push_back({Kind::kCrash, now + len, i, true, moved});
        say(tag + fmt::format("node {} crashes{}", i,
                        restart ? fmt::format(", restarts after {} ms{}", len,
                                              moved ? " on a new address" : "")
                                : " for good"));
        break;
      }
    }
  }

  // Node i is about to crash: every write that no other running node holds (in that version or
  // a newer one) dies with it, whoever wrote it. An in-memory node owes nothing it had not
  // passed on.
  void mark_unsafe_writes_of(std::size_t i) {
    SimCluster& c = *cluster_;
    for (Accepted& a : accepted_) {
      if (!a.safe) continue;
      bool held = false;
      for (std::size_t j = 0; j < n_ && !held; ++j) {
        if (j == i || !live(j)) continue;
        auto e = c.node(j).get_entry(a.key);
        held = e && e->version >= a.version;
      }
      a.safe = held;
    }
  }

  void end_fault(const Fault& f) {
    SimCluster& c = *cluster_;
    switch (f.kind) {
      case Kind::kLoss:
        c.net().set_default_link(base_);
        net_fault_ = false;
        say("loss burst ends");
        break;
      case Kind::kPartition:
      case Kind::kOneWay:
        c.net().heal();
        net_fault_ = false;
        say("partition heals");
        break;
      case Kind::kPause:
        c.resume(f.node);
        paused_.erase(f.node);
        say(fmt::format("node {} resumes", f.node));
        break;
      case Kind::kCrash: {
        const std::uint64_t before = disks_.empty() ? 0 : disks_[f.node].loaded;
        c.restart(f.node, f.new_address);
        say(fmt::format("node {} restarts{}{}", f.node, f.new_address ? " on a new address" : "",
                        disks_.empty() ? ""
                                       : fmt::format(" ({} entries from its data directory)",
                                                     disks_[f.node].loaded - before)));
        break;
      }
      case Kind::kClock: break;
    }
  }

  void end_due_faults() {
    const std::uint64_t now = elapsed_ms();
    for (std::size_t k = 0; k < faults_.size();) {
      if (faults_[k].until_ms <= now) {
        const Fault f = faults_[k];
        faults_.erase(faults_.begin() + static_cast<std::ptrdiff_t>(k));
        end_fault(f);
      } else {
        ++k;
      }
    }
  }

  void heal() {
    for (const Fault& f : faults_) end_fault(f);
    faults_.clear();
    cluster_->net().heal();
    cluster_->net().set_default_link(base_);
    say("everything heals");
  }

  // Every running node's view: node index (or ?) and state, for a failure's report.
  std::string views() {
    SimCluster& c = *cluster_;
    std::map<NodeId, std::size_t> index;
    for (std::size_t i = 0; i < n_; ++i) index[c.node(i).id()] = i;
    std::string out;
    for (std::size_t i = 0; i < n_; ++i) {
      if (!live(i)) continue;
      out += fmt::format("  view of node {}:", i);
      for (const Member& m : c.node(i).members()) {
        auto it = index.find(m.id);
        out += fmt::format(" {}={}/{}", it == index.end() ? std::string("?") : std::to_string(it->second),
                           member_state_name(m.state), m.incarnation % 100000);
      }
      out += "\n";
    }
    return out;
  }

  // ---- invariants ----
  static constexpr std::uint64_t kQuietMs = 10'000;
  std::uint64_t suspicions_raised() {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < n_; ++i) {
      if (live(i)) n += cluster_->node(i).counters().suspicions;
    }
    return n;
  }

  bool membership_ok(std::string* why) {
    SimCluster& c = *cluster_;
    for (std::size_t i = 0; i < n_; ++i) {
      if (!live(i)) continue;
      std::map<NodeId, MemberState> seen;
      for (const Member& m : c.node(i).members()) seen[m.id] = m.state;
      for (std::size_t j = 0; j < n_; ++j) {
        if (j == i) continue;
        auto it = seen.find(c.node(j).id());
        const bool alive = it != seen.end() && it->second == MemberState::kAlive;
        if (live(j) != alive) {
          if (why) {
            *why = fmt::format("node {} sees node {} as {} but it is {}", i, j,
                               it == seen.end() ? "absent" : std::string(member_state_name(it->second)),
                               live(j) ? "running" : "crashed");
          }
          return false;
        }
      }
    }
    return true;
  }

  bool converged(std::string* why) {
    if (!membership_ok(why)) return false;
    SimCluster& c = *cluster_;
    // Per key: the newest safe write, and every accepted version.
    std::map<std::string, Version> floor;
    std::map<std::string, std::set<Version>> known;
    for (const Accepted& a : accepted_) {
      known[a.key].insert(a.version);
      if (a.safe) floor[a.key] = std::max(floor[a.key], a.version);
    }
    for (const auto& [key, versions] : known) {
      std::optional<Version> agreed;
      std::size_t first = 0;
      for (std::size_t i = 0; i < n_; ++i) {
        if (!live(i)) continue;
        auto e = c.node(i).get_entry(key);
        const Version v = e ? e->version : Version{};
        if (!agreed) {
          agreed = v;
          first = i;
        } else if (*agreed != v) {
          if (why) {
            *why = fmt::format("agreement: {} is at version {}/{:x} on node {} and {}/{:x} on "
                               "node {}",
                               key, agreed->hlc, agreed->node, first, v.hlc, v.node, i);
          }
          return false;
        }
      }
      if (!agreed) continue;
      auto f = floor.find(key);
      if (f != floor.end() && *agreed < f->second) {
        if (why) {
          *why = fmt::format("no loss: {} is at {}/{:x} below the safe write {}/{:x}", key,
                             agreed->hlc, agreed->node, f->second.hlc, f->second.node);
        }
        return false;
      }
      if (!agreed->is_zero() && !versions.count(*agreed)) {
        if (why) *why = fmt::format("no invention: {} holds a version nobody wrote", key);
        return false;
      }
    }
    return true;
  }

  Rng r_;
  std::size_t n_ = 0, keys_ = 0, seeds_ = 0;
  std::set<std::size_t> skip_;
  std::size_t drawn_ = 0;
  struct Death {
    std::size_t observer;
    NodeId member;
    std::uint64_t incarnation;
  };
  std::vector<Death> deaths_;
  struct Disk {
    std::unique_ptr<DurableStore> db;
    std::unique_ptr<JournalQueues> journal;
    std::uint64_t loaded = 0;
  };
  std::vector<Disk> disks_;  // one per node when this run has data directories
  std::string disk_root_, disk_error_;
  std::uint64_t writes_ = 0, heal_ms_ = 0;
  io::LinkConfig base_;
  std::vector<std::int64_t> skew_;
  std::unique_ptr<SimCluster> cluster_;
  std::vector<Accepted> accepted_;
  std::vector<Fault> faults_;
  std::set<std::size_t> paused_;
  bool net_fault_ = false;
  std::string log_;
};

// The flags a replay needs besides the seed: overrides and faults left out.
std::string replay_flags(const ExploreOptions& o) {
  std::string out;
  for (const std::string& ov : o.overrides) out += "-o " + ov + " ";
  if (!o.skip_faults.empty()) {
    std::string list;
    for (std::size_t k : o.skip_faults) list += (list.empty() ? "" : ",") + std::to_string(k);
    out += "--skip-faults " + list + " ";
  }
  return out;
}

// The failure's first words name its invariant ("not converged ...: no loss: ..."): a smaller
// schedule counts only if it breaks the same one.
std::string invariant_of(const std::string& failure) {
  const std::size_t colon = failure.find(": ");
  if (colon == std::string::npos) return failure.substr(0, 40);
  const std::size_t next = failure.find(':', colon + 2);
  return failure.substr(0, next == std::string::npos ? colon : next);
}

// Greedy minimisation (one fault at a time, as delta debugging's last phase): leave each fault
// out in turn and keep it out when the same invariant still fails. Bounded: one rerun per fault.
void minimize(std::uint64_t seed, const ExploreOptions& o, const std::string& failure,
              std::size_t drawn) {
  ExploreOptions t = o;
  t.minimize = false;
  const std::string want = invariant_of(failure);
  std::size_t reruns = 0;
  for (std::size_t k = 0; k < drawn; ++k) {
    if (t.skip_faults.count(k)) continue;
    t.skip_faults.insert(k);
    Run again(seed, t);
    const std::string f = again.execute();
    ++reruns;
    if (f.empty() || invariant_of(f) != want) t.skip_faults.erase(k);
  }
  const std::size_t kept = drawn - t.skip_faults.size();
  std::printf("  minimised (%zu reruns): %zu of %zu faults needed; replay: rumor sim explore "
              "--seeds %llu --max-nodes %zu %s--verbose\n",
              reruns, kept, drawn, static_cast<unsigned long long>(seed), o.max_nodes,
              replay_flags(t).c_str());
}

}  // namespace

bool parse_seed_range(const std::string& text, std::uint64_t* first, std::uint64_t* last) {
  const std::size_t dots = text.find("..");
  char* end = nullptr;
  const std::string a = dots == std::string::npos ? text : text.substr(0, dots);
  const std::string b = dots == std::string::npos ? text : text.substr(dots + 2);
  if (a.empty() || b.empty()) return false;
  *first = std::strtoull(a.c_str(), &end, 10);
  if (*end != '\0') return false;
  *last = std::strtoull(b.c_str(), &end, 10);
  return *end == '\0' && *first <= *last;
}

int run_explore(const ExploreOptions& o) {
  if (o.max_nodes < 3) {
    std::fprintf(stderr, "rumor sim explore: --max-nodes must be at least 3\n");
    return 2;
  }
  for (const std::string& ov : o.overrides) {
    AgentConfig ac;
    if (!(ov.rfind("node.", 0) == 0 || ov.rfind("store.", 0) == 0)) {
      std::fprintf(stderr, "rumor sim explore: -o %s: only node.* and store.* keys apply here\n",
                   ov.c_str());
      return 2;
    }
    if (Status s = apply_override(ac, ov); !s) {
      std::fprintf(stderr, "rumor sim explore: -o %s: %s\n", ov.c_str(), s.message().c_str());
      return 2;
    }
  }
  const std::uint64_t t0 = monotonic_ns();
  std::uint64_t ran = 0, failed = 0, events = 0;
  std::vector<std::uint64_t> heal_ms;
  for (std::uint64_t seed = o.first_seed; seed <= o.last_seed; ++seed) {
    if (o.max_wall_s > 0 && static_cast<double>(monotonic_ns() - t0) / 1e9 > o.max_wall_s) {
      std::printf("stopped at --max-wall-s %g before seed %llu\n", o.max_wall_s,
                  static_cast<unsigned long long>(seed));
      break;
    }
    Run run(seed, o);
    const std::string failure = run.execute();
    ++ran;
    events += run.events();
    if (failure.empty()) heal_ms.push_back(run.heal_ms());
    if (!failure.empty()) {
      ++failed;
      std::printf("seed %llu FAILED: %s\n  replay: rumor sim explore --seeds %llu --max-nodes %zu "
                  "%s--verbose\n%s",
                  static_cast<unsigned long long>(seed), failure.c_str(),
                  static_cast<unsigned long long>(seed), o.max_nodes, replay_flags(o).c_str(),
                  run.log().c_str());
      if (o.minimize) minimize(seed, o, failure, run.faults_drawn());
    } else if (o.verbose) {
      std::printf("seed %llu ok\n%s", static_cast<unsigned long long>(seed), run.log().c_str());
    }
    std::fflush(stdout);
    if (seed == UINT64_MAX) break;
  }
  const double wall = static_cast<double>(monotonic_ns() - t0) / 1e9;
  std::sort(heal_ms.begin(), heal_ms.end());
  auto pct = [&](double p) {
    return heal_ms.empty() ? 0ull
                           : static_cast<unsigned long long>(
                                 heal_ms[static_cast<std::size_t>(p * static_cast<double>(heal_ms.size() - 1))]);
  };
  std::printf("explored %llu seed(s) in %.1f s (%llu events): %llu failed; converged after "
              "healing in %llu ms median, %llu ms p99, %llu ms at most (bound 120000)\n",
              static_cast<unsigned long long>(ran), wall, static_cast<unsigned long long>(events),
              static_cast<unsigned long long>(failed), pct(0.5), pct(0.99), pct(1.0));
  return failed == 0 ? 0 : 1;
}

}  // namespace rumor::tools
