#include "engine/sim/sim_cluster.h"

#include <algorithm>
#include <array>

#include "base/assert.h"
#include "engine/node/internal.h"
#include "rumor/driver.h"

namespace rumor {

// A PacketSink over one SimTransport at a time: buffers come from acquire(), committed ones
// are sent as one batch when the node's step ends.
struct SimCluster::Sink final : PacketSink {
  io::SimTransport* t = nullptr;
  Datagram current;
  bool holding = false;
  std::vector<Datagram> batch;

  void bind(io::SimTransport* transport) {
    t = transport;
    batch.clear();
  }
  std::span<std::byte> buffer() override {
    if (!holding) {
      if (t->acquire(std::span<Datagram>(&current, 1)) != 1) return {};
      holding = true;
    }
    return {current.data, current.capacity};
  }
  void commit(const Address& to, std::size_t len) override {
    RUMOR_ASSERT(holding);
    current.len = static_cast<std::uint32_t>(len);
    current.peer = to;
    batch.push_back(current);
    holding = false;
  }
  void finish() {
    if (holding) {
      t->release(std::span<const Datagram>(&current, 1));
      holding = false;
    }
    if (!batch.empty()) (void)t->send(batch);  // refusals are counted by the transport
    batch.clear();
    (void)t->flush();
  }
};

SimCluster::SimCluster(const Options& options) : options_(options) {
  io::SimConfig net = options_.net;
  net.seed = options_.seed;
  net.datagram_bytes_max = std::max(net.datagram_bytes_max, options_.node.datagram_bytes_max);
  net_ = std::make_unique<io::SimNetwork>(net);
  sink_ = std::make_unique<Sink>();
  directory_ = std::make_shared<MemberDirectory>();
  for (std::size_t i = 0; i < options_.nodes; ++i) make_node(i);
  if (options_.static_members) preload_members();
}

void SimCluster::preload_members() {
  // Every node starts at this virtual time, so its first incarnation is this (NodeImpl::start).
  const std::uint64_t incarnation = now_ms();
  // Gathered once: reading them through each node in the inner loop is a cache miss apiece.
  std::vector<MemberDirectory::Text> text(nodes_.size());
  std::vector<NodeId> ids(nodes_.size());
  for (std::size_t j = 0; j < nodes_.size(); ++j) {
    const NodeConfig& c = nodes_[j]->config;
    text[j] = directory_->intern(c.name, c.metadata, c.advertise);
    ids[j] = nodes_[j]->node->id();
  }
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    Members& m = NodeInternals::members(*nodes_[i]->node);
    m.reserve(nodes_.size());
    for (std::size_t j = 0; j < nodes_.size(); ++j) {
      if (j != i) m.preload(ids[j], text[j], incarnation);
    }
  }
  for (MemberDirectory::Text t : text) directory_->release(t);
}

SimCluster::~SimCluster() = default;

void SimCluster::attach(SimNode& sn, std::size_t i, const Address& addr) {
  auto t = net_->add_node(addr);
  RUMOR_ASSERT(t.is_ok());
  sn.transport = *t;
  if (by_net_id_.size() <= sn.transport->id()) by_net_id_.resize(sn.transport->id() + 1);
  by_net_id_[sn.transport->id()] = i;
}

std::uint64_t SimCluster::entropy_seed(std::size_t i) {
  // Its own stream, apart from the node's protocol Rng (seeded from config.seed) and distinct
  // per node and per (re)start whatever `configure` did to the seeds, so no two nodes in a run
  // ever draw the same nonce salt.
  std::uint64_t x = (options_.seed ^ 0x4e6f'6e63'6553'616cull) +  // "NonceSal"
                    (static_cast<std::uint64_t>(i) << 32) + starts_++;
  return splitmix64(x);
}

void SimCluster::make_node(std::size_t i) {
  auto sn = std::make_unique<SimNode>();
  sn->clock.net = net_.get();
  sn->clock.skew_ms = i < options_.skew_ms.size() ? options_.skew_ms[i] : 0;
  // 10.x addresses exist only inside the simulator; nothing is sent on a real network.
  const Address addr = Address::ipv4(0x0a000000u + static_cast<std::uint32_t>(i) + 1, 7946);
  attach(*sn, i, addr);
  sn->config = options_.node;
  sn->config.name = "node-" + std::to_string(i);
  sn->config.id = 0;
  sn->config.advertise = addr;
  sn->config.seed = options_.seed * 1'000'003 + i + 1;
  if (i < options_.cores.size()) sn->config.store.owners = options_.cores[i];
  sn->config.seeds.clear();
  // Preloaded members need no seed: a join would only push the whole table around.
  const std::size_t seeds = options_.static_members ? 0 : options_.seeds;
  for (std::size_t s = 0; s < seeds && s < options_.nodes; ++s) {
    if (s != i) sn->config.seeds.push_back(Address::ipv4(0x0a000000u + static_cast<std::uint32_t>(s) + 1, 7946));
  }
  if (options_.configure) options_.configure(i, sn->config);
  sn->entropy.reseed(entropy_seed(i));
  auto node = Node::create(sn->config, NodeEnvironment{sn->clock, &sn->entropy});
  RUMOR_ASSERT(node.is_ok());
  sn->node = std::move(node).value();
  // A partial-view node's table holds itself only: a shared directory would give it arrays as
  // long as the cluster (its slot's index).
  if (sn->config.membership == Membership::kFull) {
    NodeInternals::members(*sn->node).share_directory(directory_);
  }
  if (options_.on_create) options_.on_create(i, *sn->node);
  if (nodes_.size() <= i) nodes_.resize(i + 1);
  nodes_[i] = std::move(sn);
}

std::uint64_t SimCluster::deadline_ns(std::size_t i) const {
  const SimNode& sn = *nodes_[i];
  if (sn.crashed || sn.stalled || !NodeDriver::of(*sn.node).running()) return UINT64_MAX;
  const NodeDriver& drv = NodeDriver::of(*sn.node);
  std::uint64_t d = UINT64_MAX;
  for (std::uint32_t c = 0; c < drv.cores(); ++c) d = std::min(d, drv.next_deadline_ms(c));
  if (d == UINT64_MAX) return UINT64_MAX;
  const std::int64_t rel =
      static_cast<std::int64_t>(d) - sn.clock.skew_ms - static_cast<std::int64_t>(kEpochMs);
  if (rel <= 0) return net_->now_ns();
  return std::max<std::uint64_t>(static_cast<std::uint64_t>(rel) * 1'000'000, net_->now_ns());
}

void SimCluster::schedule(std::size_t i) {
  const std::uint64_t d = deadline_ns(i);
  if (d == nodes_[i]->scheduled_ns) return;
  nodes_[i]->scheduled_ns = d;
  if (d != UINT64_MAX) timers_.push(Timer{d, i});
}

void SimCluster::stall(std::size_t i) {
  nodes_[i]->stalled = true;
  net_->pause(net_id(i));
  schedule(i);
}

void SimCluster::unstall(std::size_t i) {
  nodes_[i]->stalled = false;
  net_->resume(net_id(i));
  schedule(i);
}

void SimCluster::start(std::size_t i) {
  SimNode& sn = *nodes_[i];
  sink_->bind(sn.transport);
  NodeDriver& drv = NodeDriver::of(*sn.node);
  for (std::uint32_t c = 0; c < drv.cores(); ++c) drv.start(c, *sink_);
  sink_->finish();
  schedule(i);
}

void SimCluster::start_all() {
  for (std::size_t i = 0; i < nodes_.size(); ++i) start(i);
}

void SimCluster::stop(std::size_t i) {
  SimNode& sn = *nodes_[i];
  sink_->bind(sn.transport);
  NodeDriver& drv = NodeDriver::of(*sn.node);
  for (std::uint32_t c = drv.cores(); c-- > 0;) drv.stop(c, *sink_);
  sink_->finish();
}

void SimCluster::crash(std::size_t i) {
  nodes_[i]->crashed = true;
  net_->pause(net_id(i));  // sends nothing, hears nothing
}

void SimCluster::restart(std::size_t i, bool new_address) {
  SimNode& sn = *nodes_[i];
  if (new_address) {
    // The old address goes silent for good; the process reappears elsewhere. 10.1.x.y exists
    // only inside the simulator.
    const Address addr =
        Address::ipv4(0x0a010000u + static_cast<std::uint32_t>(++moves_) * 256 +
                          static_cast<std::uint32_t>(i % 256),
                      7946);
    attach(sn, i, addr);
    sn.config.advertise = addr;
  }
  // Drain what queued up while it was down: the new process starts with empty sockets.
  net_->resume(net_id(i));
  std::array<Datagram, 64> batch;
  for (;;) {
    const std::size_t n = sn.transport->receive(batch);
    if (n == 0) break;
    sn.transport->release(std::span<const Datagram>(batch.data(), n));
  }
  sn.entropy.reseed(entropy_seed(i));
  auto node = Node::create(sn.config, NodeEnvironment{sn.clock, &sn.entropy});
  RUMOR_ASSERT(node.is_ok());
  sn.node = std::move(node).value();
  if (sn.config.membership == Membership::kFull) {
    NodeInternals::members(*sn.node).share_directory(directory_);
  }
  if (options_.on_create) options_.on_create(i, *sn.node);
  sn.crashed = false;
  sn.scheduled_ns = UINT64_MAX;
  start(i);
}

void SimCluster::step_node_receive(std::size_t i) {
  SimNode& sn = *nodes_[i];
  if (sn.crashed || sn.stalled) return;
  NodeDriver& drv = NodeDriver::of(*sn.node);
  std::array<Datagram, 64> batch;
  sink_->bind(sn.transport);
  per_core_.resize(std::max<std::size_t>(per_core_.size(), drv.cores()));
  for (;;) {
    const std::size_t n = sn.transport->receive(batch);
    for (auto& v : per_core_) v.clear();
    for (std::size_t k = 0; k < n; ++k) {
      // A multi-core node: the core the kernel would steer the datagram to.
      per_core_[drv.core_of(batch[k].bytes())].push_back(
          ReceivedDatagram{batch[k].peer, batch[k].bytes()});
      ++events_;
    }
    for (std::uint32_t c = 0; c < drv.cores(); ++c) {
      if (!per_core_[c].empty()) drv.receive(c, per_core_[c], *sink_);
    }
    sn.transport->release(std::span<const Datagram>(batch.data(), n));
    if (n < batch.size()) break;
  }
  sink_->finish();
  drv.dispatch_events();
  schedule(i);
}

void SimCluster::step_node_tick(std::size_t i) {
  SimNode& sn = *nodes_[i];
  if (sn.crashed || sn.stalled) return;
  NodeDriver& drv = NodeDriver::of(*sn.node);
  sink_->bind(sn.transport);
  // Core 0 first, then the others, each once per step; what they hand to each other keeps the
  // node's deadline at "now", so it is picked up at this same virtual instant.
  for (std::uint32_t c = 0; c < drv.cores(); ++c) drv.tick(c, *sink_);
  ++events_;
  sink_->finish();
  drv.dispatch_events();
  schedule(i);
}

void SimCluster::run_to(std::uint64_t t_end) {
  for (;;) {
    // The next thing to happen: a datagram landing or a node's timer.
    while (!timers_.empty()) {
      const Timer& top = timers_.top();
      if (nodes_[top.node]->scheduled_ns == top.time_ns) break;
      timers_.pop();  // stale: the node rescheduled since
    }
    const std::uint64_t t_timer = timers_.empty() ? UINT64_MAX : timers_.top().time_ns;
    const std::uint64_t t_net = net_->next_event_ns();
    const std::uint64_t t = std::min(t_timer, t_net);
    if (t > t_end) break;
    net_->advance_to(std::max(t, net_->now_ns()));
    ready_.clear();
    net_->take_ready(&ready_);
    std::sort(ready_.begin(), ready_.end());  // a fixed order, for replay
    for (io::NodeId id : ready_) step_node_receive(by_net_id_[id]);
    while (!timers_.empty() && timers_.top().time_ns <= net_->now_ns()) {
      const Timer top = timers_.top();
      timers_.pop();
      if (nodes_[top.node]->scheduled_ns != top.time_ns) continue;
      nodes_[top.node]->scheduled_ns = UINT64_MAX;
      step_node_tick(top.node);
    }
  }
  net_->advance_to(std::max(t_end, net_->now_ns()));
  ready_.clear();
  net_->take_ready(&ready_);
  std::sort(ready_.begin(), ready_.end());
  for (io::NodeId id : ready_) step_node_receive(by_net_id_[id]);
}

void SimCluster::run_for(std::uint64_t ms) { run_to(net_->now_ns() + ms * 1'000'000); }

bool SimCluster::run_until(const std::function<bool()>& pred, std::uint64_t max_ms,
                           std::uint64_t check_every_ms) {
  const std::uint64_t end = net_->now_ns() + max_ms * 1'000'000;
  while (!pred()) {
    if (net_->now_ns() >= end) return false;
    run_to(std::min(end, net_->now_ns() + check_every_ms * 1'000'000));
  }
  return true;
}

}  // namespace rumor
