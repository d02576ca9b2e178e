// SimNetwork and SimTransport: a deterministic in-memory UDP network with virtual time, for
// tests and for simulating large clusters (docs/architecture.md).
//
// Determinism: everything random (latency jitter, loss, duplication, reordering) comes from one
// generator seeded by SimConfig::seed, drawn in the order datagrams are flushed; events at the
// same instant are delivered in the order they were scheduled. The same seed and the same calls
// therefore produce the same deliveries, byte for byte and nanosecond for nanosecond
// (trace_hash() proves it). No clocks, no threads, no sleeping: the caller advances time.
//
// Fault model, per directed link (defaults in SimConfig::link, overrides with set_link):
//   latency      base + uniform jitter in [0, jitter_ns]
//   loss         each datagram independently, with probability `loss`
//   duplication  a second copy, with its own latency, with probability `duplicate`
//   reordering   jitter reorders on its own; `reorder` also holds a datagram back by
//                reorder_delay_ns extra
//   bandwidth    bytes/s on the sender's uplink: datagrams serialise one after another and a
//                backlog beyond uplink_queue_ns_max is dropped
// and per node or group:
//   partitions   cut(a, b) one-way; cut_both(a, b); groups with cut_groups (one-way) and
//                partition(side) (symmetric, side against everyone else). Checked on delivery:
//                a datagram in flight when a link is cut is lost.
//   pause        a paused node sends nothing (its flushes wait) and receives nothing (arrivals
//                queue in its inbox, bounded like a socket buffer) until resumed.
//
// Memory: a node is a few hundred bytes (no per-node threads, queues or buffers); datagram
// buffers come from one network-wide pool, allocated in chunks as the traffic needs them and
// recycled, bounded by buffers_max. In-flight datagrams are records in one pool; inboxes are
// intrusive lists through them. 10,000 nodes fit in a few MiB plus the traffic in flight.
//
// Thread safety: none; one thread drives the network and every node on it.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/rng.h"
#include "rumor/transport.h"

namespace rumor::io {

using NodeId = std::uint32_t;
inline constexpr NodeId kNoNode = std::numeric_limits<NodeId>::max();

struct LinkConfig {
  std::uint64_t latency_ns = 1'000'000;  // one-way base latency
  std::uint64_t jitter_ns = 0;           // + uniform [0, jitter_ns]
  double loss = 0.0;                     // probabilities, 0..1
  double duplicate = 0.0;
  double reorder = 0.0;
  std::uint64_t reorder_delay_ns = 0;
  std::uint64_t bandwidth_bytes_per_s = 0;  // 0 = unlimited
};

struct SimConfig {
  std::uint64_t seed = 1;
  LinkConfig link;
  std::uint32_t datagram_bytes_max = kDatagramBytesDefault;
  std::uint32_t inbox_datagrams_max = 1024;  // per node, like a socket's receive queue
  std::uint32_t recv_buffers = 256;          // per node: received datagrams lent at once
  std::uint32_t send_buffers = 256;          // per node: send buffers lent or queued at once
  std::uint64_t buffers_max = 1u << 20;      // network-wide datagram buffers
  std::uint64_t uplink_queue_ns_max = 100'000'000;
};

// Network-wide tallies.
struct SimCounters {
  std::uint64_t transmitted = 0;  // datagrams accepted from senders
  std::uint64_t delivered = 0;    // datagrams put in an inbox
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
  std::array<std::uint64_t, kDropReasonCount> drops{};
  std::uint64_t drop_count(DropReason r) const { return drops[static_cast<std::size_t>(r)]; }
};

class SimNetwork;

class SimTransport final : public Transport {
 public:
  NodeId id() const { return id_; }
  Address local_address() const override { return address_; }
  TransportInfo info() const override;
  const TransportCounters& counters() const override { return counters_; }
  std::size_t receive(std::span<Datagram> out) override;
  std::size_t acquire(std::span<Datagram> out) override;
  Status send(std::span<const Datagram> batch) override;
  void release(std::span<const Datagram> batch) override;
  Status flush() override;
  // Flushes; never waits (time moves only when the network is advanced).
  Status poll(std::uint64_t timeout_ns, std::uint32_t wait_count) override;

  std::uint32_t inbox_size() const { return inbox_count_; }
  // Per-node pool limits (default: SimConfig's), like a socket transport's recv/send_buffers.
  void set_buffer_limits(std::uint32_t recv_buffers, std::uint32_t send_buffers) {
    rx_max_ = recv_buffers;
    tx_max_ = send_buffers;
  }

 private:
  friend class SimNetwork;
  SimTransport(SimNetwork* net, NodeId id, const Address& address, std::uint32_t rx_max,
               std::uint32_t tx_max)
      : net_(net), id_(id), address_(address), rx_max_(rx_max), tx_max_(tx_max) {}

  SimNetwork* net_;
  NodeId id_;
  Address address_;
  std::uint32_t inbox_head_ = kNoNode;  // packet records, oldest first
  std::uint32_t inbox_tail_ = kNoNode;
  std::uint32_t inbox_count_ = 0;
  std::uint32_t pending_head_ = kNoNode;  // sent, waiting for flush
  std::uint32_t pending_tail_ = kNoNode;
  std::uint32_t rx_max_;
  std::uint32_t tx_max_;
  std::uint32_t rx_lent_ = 0;
  std::uint32_t tx_held_ = 0;  // lent for sending or pending
  std::uint32_t group_ = 0;
  bool paused_ = false;
  bool ready_ = false;  // on the network's ready list
  std::uint64_t uplink_free_ns_ = 0;
  TransportCounters counters_;
};

class SimNetwork {
 public:
  explicit SimNetwork(const SimConfig& config);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  const SimConfig& config() const { return config_; }
  std::uint64_t seed() const { return config_.seed; }

  // A node at `address`; port 0 picks an unused one. The network owns it; the pointer stays
  // valid for the network's life.
  Result<SimTransport*> add_node(const Address& address);
  SimTransport& node(NodeId id) { return *nodes_[id]; }
  std::size_t node_count() const { return nodes_.size(); }
  NodeId find(const Address& address) const;

  // ---- Time ----
  std::uint64_t now_ns() const { return now_ns_; }
  // When the next datagram lands; UINT64_MAX when nothing is in flight.
  std::uint64_t next_event_ns() const;
  // Delivers everything due at or before t (t >= now), then sets now to t. Returns deliveries.
  std::size_t advance_to(std::uint64_t t);
  std::size_t advance_by(std::uint64_t dt) { return advance_to(now_ns_ + dt); }
  // Nodes whose inbox went from empty to non-empty since the last call (each once), so a
  // driver of 10,000 nodes steps only those with something to read.
  void take_ready(std::vector<NodeId>* out);

  // ---- Faults ----
  void set_link(NodeId from, NodeId to, const LinkConfig& link);  // one direction
  // The configuration of every link without an override (SimConfig::link), e.g. to make the
  // whole network lossy after a cluster has formed.
  void set_default_link(const LinkConfig& link) { config_.link = link; }
  void clear_links();
  void cut(NodeId from, NodeId to);  // one-way
  void cut_both(NodeId a, NodeId b);
  void set_group(NodeId node, std::uint32_t group);
  void cut_groups(std::uint32_t from, std::uint32_t to);  // one-way between groups
  // Symmetric partition: `side` can no longer talk to any node outside it, either way.
  void partition(std::span<const NodeId> side);
  void heal();  // every cut and group gone; links keep their configuration
  void pause(NodeId node);
  void resume(NodeId node);

  // ---- Observability ----
  const SimCounters& counters() const { return counters_; }
  std::uint64_t in_flight() const { return heap_.size(); }
  std::uint64_t buffers_allocated() const { return buffer_owner_.size(); }
  std::size_t memory_bytes() const;
  // A running hash of every delivery (receiver, sender, length, time, payload head).
  std::uint64_t trace_hash() const { return trace_hash_; }

  // Puts raw bytes on the wire as if `from` had sent them to `to`, skipping the sender's
  // checks (a datagram longer than datagram_bytes_max is dropped at the receiver as truncated).
  Status inject(const Address& from, const Address& to, std::span<const std::byte> bytes);

 private:
  friend class SimTransport;

  struct Packet {
    Address peer;  // destination while pending; the source once transmitted
    std::uint32_t buffer = 0;
    std::uint32_t len = 0;
    NodeId from = kNoNode;
    NodeId to = kNoNode;
    std::uint32_t next = kNoNode;
    std::uint64_t rx_time_ns = 0;
  };
  struct Event {
    std::uint64_t time_ns;
    std::uint64_t seq;
    std::uint32_t packet;
  };
  enum BufferState : std::uint8_t { kFree, kLentTx, kPending, kInFlight, kLentRx };

  // Buffers.
  std::uint32_t alloc_buffer(NodeId owner, BufferState state);  // kNoNode when exhausted
  void free_buffer(std::uint32_t b);
  std::byte* buffer(std::uint32_t b) const {
    return chunks_[b / kChunkBuffers].get() + static_cast<std::size_t>(b % kChunkBuffers) * stride_;
  }
  // Packet records.
  std::uint32_t alloc_packet();
  void free_packet(std::uint32_t p);

  void transmit(NodeId from, std::uint32_t packet);  // sender's flush hands a datagram over
  void schedule(std::uint32_t packet, std::uint64_t time_ns);
  void deliver(std::uint32_t packet);
  bool blocked(NodeId from, NodeId to) const;
  const LinkConfig& link(NodeId from, NodeId to) const;
  void drop(DropReason r) { ++counters_.drops[static_cast<std::size_t>(r)]; }

  // Deterministic randomness from config.seed (base/rng.h).
  bool chance(double p);
  std::uint64_t below(std::uint64_t n);  // uniform in [0, n)

  static constexpr std::uint32_t kChunkBuffers = 256;

  SimConfig config_;
  std::uint32_t stride_;
  std::uint64_t now_ns_ = 0;
  std::uint64_t seq_ = 0;
  Rng rng_;
  std::uint64_t trace_hash_ = 0;
  std::uint16_t next_port_ = 40000;

  std::vector<std::unique_ptr<SimTransport>> nodes_;
  std::unordered_map<Address, NodeId> by_address_;

  std::vector<std::unique_ptr<std::byte[]>> chunks_;
  std::vector<std::uint64_t> buffer_owner_;  // (node << 8) | BufferState, per buffer
  std::vector<std::uint32_t> free_buffers_;

  std::vector<Packet> packets_;
  std::uint32_t free_packets_ = kNoNode;  // intrusive free list through Packet::next

  std::vector<Event> heap_;  // min-heap on (time_ns, seq)
  std::vector<NodeId> ready_;

  std::unordered_map<std::uint64_t, LinkConfig> links_;
  std::unordered_set<std::uint64_t> cuts_;
  std::unordered_set<std::uint64_t> group_cuts_;
  std::uint32_t groups_used_ = 1;  // group 0 is everyone's at start

  SimCounters counters_;
};

}  // namespace rumor::io
