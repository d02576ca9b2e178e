// `rumor load --mode sim`: every node in this process over io::SimNetwork, virtual time, one
// thread (engine/sim/sim_cluster.h). Deterministic from --seed: the same command prints the same
// rounds and counts (wall time and memory aside).
#include <unordered_map>

#include <fmt/format.h>

#include "engine/node/internal.h"
#include "engine/sim/sim_cluster.h"
#include "rumor/driver.h"
#include "tools/load.h"
#include "tools/load_common.h"

namespace rumor::tools {
namespace {

class SimLoad final : public LoadCluster {
 public:
  explicit SimLoad(const LoadOptions& o) : fp_(o.nodes) {
    SimCluster::Options so;
    so.nodes = o.nodes;
    so.seed = o.seed;
    so.seeds = o.seeds;
    so.node = preset_config(o.preset);
    so.net.link.latency_ns = static_cast<std::uint64_t>(o.latency_ms * 1e6);
    so.net.link.jitter_ns = static_cast<std::uint64_t>(o.jitter_ms * 1e6);
    so.net.link.loss = o.loss;
    so.net.link.duplicate = o.duplicate;
    so.net.link.reorder = o.reorder;
    so.net.link.reorder_delay_ns = so.net.link.latency_ns * 4;
    so.static_members = o.bootstrap == "static";
    partial_ = o.membership == "partial";
    if (partial_) {
      so.node.membership = Membership::kPartial;
      so.node.expected_nodes = static_cast<std::uint32_t>(std::min<std::size_t>(o.nodes, UINT32_MAX));
    }
    // Sim nodes write from the driver thread: the cross-thread write queue is never used, and
    // the change feed is drained after every packet. Small ones save ~0.5 MiB per node.
    so.node.store.write_queue_depth = 2;
    so.node.store.change_feed_depth = 256;
    // The per-address rate-limit tables (two of 4,096 slots, 192 KiB a node) shrink to 256
    // slots: at 10,000 nodes about 40 peers share a bucket, still far above what a simulated
    // node receives (tens of datagrams a second) — docs/load.md says so.
    so.node.rate_limit_peers_max = 256;
    so.on_create = [this](std::size_t i, Node& n) { fp_.watch(i, n); };
    c_ = std::make_unique<SimCluster>(so);
    for (std::size_t i = 0; i < o.nodes; ++i) fp_.name(i, c_->node(i).id());
  }

  std::size_t size() const override { return c_->size(); }
  std::uint64_t elapsed_ms() override { return c_->now_ms() - SimCluster::kEpochMs; }
  void run_for(std::uint64_t ms) override { c_->run_for(ms); }
  void start_all() override { c_->start_all(); }

  std::size_t running() override {
    std::size_t n = 0;
    for (std::size_t i = 0; i < c_->size(); ++i) n += c_->crashed(i) ? 0 : 1;
    return n;
  }
  std::size_t members_complete() override {
    const std::size_t up = running();
    if (partial_) {
      // Partial views: a node is in when its active view holds at least two peers (one when
      // the cluster has two nodes); no node ever knows every member.
      const std::size_t need = std::min<std::size_t>(2, up > 0 ? up - 1 : 0);
      std::size_t n = 0;
      for (std::size_t i = 0; i < c_->size(); ++i) {
        if (!c_->crashed(i) && NodeDriver::of(c_->node(i)).live_members() >= need) ++n;
      }
      return n;
    }
    std::size_t n = 0;
    for (std::size_t i = 0; i < c_->size(); ++i) {
      if (!c_->crashed(i) && NodeDriver::of(c_->node(i)).live_members() + 1 >= up) ++n;
    }
    return n;
  }
  std::string why_incomplete(std::size_t nodes) override {
    if (partial_) return "";
    const std::size_t up = running();
    // A complete view to compare with.
    std::size_t ref = c_->size();
    for (std::size_t i = 0; i < c_->size() && ref == c_->size(); ++i) {
      if (!c_->crashed(i) && NodeDriver::of(c_->node(i)).live_members() + 1 >= up) ref = i;
    }
    std::unordered_map<NodeId, Member> theirs;
    if (ref < c_->size()) {
      for (Member& m : c_->node(ref).members()) theirs.emplace(m.id, std::move(m));
    }
    std::string out;
    for (std::size_t i = 0; i < c_->size() && nodes > 0; ++i) {
      if (c_->crashed(i) || NodeDriver::of(c_->node(i)).live_members() + 1 >= up) continue;
      --nodes;
      std::unordered_map<NodeId, const Member*> mine;
      const std::vector<Member> view = c_->node(i).members();
      for (const Member& m : view) mine.emplace(m.id, &m);
      std::size_t missing = 0;
      std::string detail;
      for (std::size_t j = 0; j < c_->size(); ++j) {
        if (j == i || c_->crashed(j)) continue;
        const NodeId id = c_->node(j).id();
        auto it = mine.find(id);
        if (it != mine.end() && (it->second->state == MemberState::kAlive ||
                                 it->second->state == MemberState::kSuspect)) {
          continue;
        }
        if (++missing > 3) continue;
        auto other = theirs.find(id);
        detail += fmt::format(
            "; node {}: {} here, {} at node {}", j,
            it == mine.end() ? std::string("unknown")
                             : fmt::format("{} inc {}", member_state_name(it->second->state),
                                           it->second->incarnation),
            other == theirs.end() ? std::string("unknown")
                                  : fmt::format("{} inc {}", member_state_name(other->second.state),
                                                other->second.incarnation),
            ref);
      }
      out += fmt::format("{}    node {} lacks {} running member(s){}", out.empty() ? "" : "\n", i,
                         missing, detail);
    }
    return out;
  }
  std::size_t holding(const KeyValues& kv) override {
    std::size_t n = 0;
    for (std::size_t i = 0; i < c_->size(); ++i) {
      if (!c_->crashed(i) && holds_all(c_->node(i), kv)) ++n;
    }
    return n;
  }
  Status write(std::size_t i, const std::string& key, const std::string& value) override {
    return c_->node(i).set(key, value);
  }
  void crash(std::size_t i) override {
    c_->crash(i);
    fp_.set_up(i, false);
  }
  void restart(std::size_t i) override {
    // The old process's counters leave with it; keep them in the totals.
    const NodeCounters k = c_->node(i).counters();
    retired_.packets_sent += k.packets_sent;
    retired_.bytes_sent += k.bytes_sent;
    fp_.set_up(i, true, c_->now_ms());
    c_->restart(i);
  }
  void partition(std::size_t at) override {
    std::vector<io::NodeId> side;
    for (std::size_t i = 0; i < at; ++i) side.push_back(c_->net_id(i));
    c_->net().partition(side);
    fp_.set_partition(at);
  }
  void heal() override {
    c_->net().heal();
    fp_.set_partition(0);
  }
  Stats stats() override {
    Stats s;
    for (std::size_t i = 0; i < c_->size(); ++i) {
      const NodeCounters k = c_->node(i).counters();
      s.packets_sent += k.packets_sent;
      s.bytes_sent += k.bytes_sent;
      const Members& m = NodeInternals::members(c_->node(i));
      s.member_table_records += m.table_records();
      s.member_news_records += m.news_records();
      s.broadcasts_sent += k.broadcasts_sent;
      s.tree_payloads += k.tree_payloads_sent;
      s.sync_entries_sent += k.sync_entries_sent;
      s.tree_duplicates += k.tree_duplicates;
      s.tree_grafts += k.tree_grafts;
      s.tree_prunes += k.tree_prunes;
      s.view_failures += k.view_failures;
      if (c_->crashed(i)) continue;
      s.view_active_min = i == 0 ? k.view_active : std::min(s.view_active_min, k.view_active);
      s.view_active_max = std::max(s.view_active_max, k.view_active);
      s.view_active_sum += k.view_active;
      s.view_passive_sum += k.view_passive;
      s.membership_bytes += NodeInternals::membership_bytes(c_->node(i));
    }
    s.packets_sent += retired_.packets_sent;
    s.bytes_sent += retired_.bytes_sent;
    s.events = c_->events();
    s.false_suspicions = fp_.suspicions();
    s.false_deaths = fp_.deaths();
    s.peak_rss_bytes = s.total_rss_bytes = peak_rss_bytes();
    return s;
  }
  std::string describe() override { return "sim (one process, one thread, virtual time)"; }

 private:
  std::unique_ptr<SimCluster> c_;
  bool partial_ = false;
  FalsePositives fp_;
  Stats retired_;
};

}  // namespace

Result<std::unique_ptr<LoadCluster>> make_sim_cluster(const LoadOptions& o) {
  return std::unique_ptr<LoadCluster>(new SimLoad(o));
}

}  // namespace rumor::tools
