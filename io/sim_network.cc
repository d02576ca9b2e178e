#include "io/sim_network.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"

namespace rumor::io {
namespace {

std::uint64_t pair_key(std::uint32_t a, std::uint32_t b) {
  return (static_cast<std::uint64_t>(a) << 32) | b;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

// Min-heap order on (time, seq): std::push_heap builds a max-heap, so compare reversed.
struct Later {
  template <typename E>
  bool operator()(const E& a, const E& b) const {
    return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.seq > b.seq;
  }
};

}  // namespace

// ---- SimNetwork ----

SimNetwork::SimNetwork(const SimConfig& config) : config_(config), rng_(config.seed) {
  RUMOR_ASSERT(config_.datagram_bytes_max > 0);
  RUMOR_ASSERT(config_.datagram_bytes_max <= kDatagramBytesLimit);
  RUMOR_ASSERT(config_.buffers_max < kNoNode);
  stride_ = (config_.datagram_bytes_max + 15u) & ~15u;
}

SimNetwork::~SimNetwork() = default;

bool SimNetwork::chance(double p) {
  if (p <= 0.0) return false;
  return rng_.uniform() < p;
}

std::uint64_t SimNetwork::below(std::uint64_t n) {
  RUMOR_ASSERT(n > 0);
  return static_cast<std::uint64_t>((static_cast<unsigned __int128>(rng_.next()) * n) >> 64);
}

Result<SimTransport*> SimNetwork::add_node(const Address& address) {
  if (address.empty()) return Status::error(Code::kInvalidArgument, "sim: node without address");
  Address a = address;
  if (a.port() == 0) {
    // Bounded: at most 65536 ports to try.
    for (int tries = 0; tries < 65536; ++tries) {
      a.set_port(next_port_);
      next_port_ = static_cast<std::uint16_t>(next_port_ == 65535 ? 1024 : next_port_ + 1);
      if (by_address_.find(a) == by_address_.end()) break;
    }
  }
  if (by_address_.find(a) != by_address_.end()) {
    return Status::error(Code::kInvalidArgument, "sim: address " + a.to_string() + " in use");
  }
  const auto id = static_cast<NodeId>(nodes_.size());
  RUMOR_ASSERT(id != kNoNode);
  nodes_.push_back(std::unique_ptr<SimTransport>(new SimTransport(this, id, a, config_.recv_buffers, config_.send_buffers)));
  by_address_.emplace(a, id);
  return nodes_.back().get();
}

NodeId SimNetwork::find(const Address& address) const {
  auto it = by_address_.find(address);
  return it == by_address_.end() ? kNoNode : it->second;
}

std::uint32_t SimNetwork::alloc_buffer(NodeId owner, BufferState state) {
  if (free_buffers_.empty()) {
    if (buffer_owner_.size() + kChunkBuffers > config_.buffers_max) return kNoNode;
    const auto first = static_cast<std::uint32_t>(buffer_owner_.size());
    chunks_.push_back(std::make_unique<std::byte[]>(static_cast<std::size_t>(stride_) *
                                                    kChunkBuffers));
    buffer_owner_.resize(buffer_owner_.size() + kChunkBuffers, kFree);
    for (std::uint32_t i = kChunkBuffers; i > 0; --i) free_buffers_.push_back(first + i - 1);
  }
  const std::uint32_t b = free_buffers_.back();
  free_buffers_.pop_back();
  RUMOR_ASSERT((buffer_owner_[b] & 0xff) == kFree);
  buffer_owner_[b] = (static_cast<std::uint64_t>(owner) << 8) | state;
  return b;
}

void SimNetwork::free_buffer(std::uint32_t b) {
  RUMOR_ASSERT(b < buffer_owner_.size());
  RUMOR_ASSERT((buffer_owner_[b] & 0xff) != kFree);
  buffer_owner_[b] = kFree;
  free_buffers_.push_back(b);
}

std::uint32_t SimNetwork::alloc_packet() {
  if (free_packets_ != kNoNode) {
    const std::uint32_t p = free_packets_;
    free_packets_ = packets_[p].next;
    packets_[p] = Packet{};
    return p;
  }
  packets_.emplace_back();
  return static_cast<std::uint32_t>(packets_.size() - 1);
}

void SimNetwork::free_packet(std::uint32_t p) {
  packets_[p].next = free_packets_;
  free_packets_ = p;
}

const LinkConfig& SimNetwork::link(NodeId from, NodeId to) const {
  if (!links_.empty()) {
    auto it = links_.find(pair_key(from, to));
    if (it != links_.end()) return it->second;
  }
  return config_.link;
}

bool SimNetwork::blocked(NodeId from, NodeId to) const {
  if (from == kNoNode) return false;  // injected from outside the simulated nodes
  if (!cuts_.empty() && cuts_.count(pair_key(from, to)) != 0) return true;
  if (!group_cuts_.empty()) {
    const std::uint32_t gf = nodes_[from]->group_;
    const std::uint32_t gt = nodes_[to]->group_;
    if (gf != gt && group_cuts_.count(pair_key(gf, gt)) != 0) return true;
  }
  return false;
}

void SimNetwork::schedule(std::uint32_t packet, std::uint64_t time_ns) {
  heap_.push_back(Event{time_ns, seq_++, packet});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
}

void SimNetwork::transmit(NodeId from, std::uint32_t p) {
  SimTransport& sender = *nodes_[from];
  Packet& pkt = packets_[p];
  const NodeId to = find(pkt.peer);
  if (to == kNoNode) {
    drop(DropReason::kNoRoute);
    free_buffer(pkt.buffer);
    free_packet(p);
    return;
  }
  ++counters_.transmitted;
  const LinkConfig& l = link(from, to);
  if (chance(l.loss)) {
    drop(DropReason::kLoss);
    free_buffer(pkt.buffer);
    free_packet(p);
    return;
  }
  std::uint64_t depart = now_ns_;
  if (l.bandwidth_bytes_per_s != 0) {
    const std::uint64_t start = std::max(now_ns_, sender.uplink_free_ns_);
    if (start - now_ns_ > config_.uplink_queue_ns_max) {
      drop(DropReason::kUplinkFull);
      free_buffer(pkt.buffer);
      free_packet(p);
      return;
    }
    // Serialisation time of this datagram on the uplink (+28 bytes of IPv4/UDP headers).
    const std::uint64_t bits_ns =
        (static_cast<std::uint64_t>(pkt.len) + 28) * 1'000'000'000ull / l.bandwidth_bytes_per_s;
    depart = start + bits_ns;
    sender.uplink_free_ns_ = depart;
  }
  pkt.peer = sender.address_;  // from here on, the source the receiver sees
  pkt.from = from;
  pkt.to = to;
  buffer_owner_[pkt.buffer] = (static_cast<std::uint64_t>(to) << 8) | kInFlight;

  auto latency = [&]() {
    std::uint64_t d = l.latency_ns;
    if (l.jitter_ns != 0) d += below(l.jitter_ns + 1);
    if (chance(l.reorder)) {
      d += l.reorder_delay_ns;
      ++counters_.reordered;
    }
    return d;
  };
  schedule(p, depart + latency());

  if (chance(l.duplicate)) {
    const std::uint32_t b = alloc_buffer(to, kInFlight);
    if (b != kNoNode) {
      const std::uint32_t q = alloc_packet();
      Packet& orig = packets_[p];  // alloc_packet may have moved the vector
      Packet& dup = packets_[q];
      dup = orig;
      dup.buffer = b;
      dup.next = kNoNode;
      std::memcpy(buffer(b), buffer(orig.buffer), std::min(orig.len, stride_));
      ++counters_.duplicated;
      schedule(q, depart + latency());
    }
  }
}

void SimNetwork::deliver(std::uint32_t p) {
  Packet& pkt = packets_[p];
  if (blocked(pkt.from, pkt.to)) {
    drop(DropReason::kPartition);
    free_buffer(pkt.buffer);
    free_packet(p);
    return;
  }
  SimTransport& dst = *nodes_[pkt.to];
  if (pkt.len > config_.datagram_bytes_max) {
    ++dst.counters_.drops[static_cast<std::size_t>(DropReason::kTruncated)];
    drop(DropReason::kTruncated);
    free_buffer(pkt.buffer);
    free_packet(p);
    return;
  }
  if (dst.inbox_count_ >= config_.inbox_datagrams_max) {
    ++dst.counters_.drops[static_cast<std::size_t>(DropReason::kInboxFull)];
    drop(DropReason::kInboxFull);
    free_buffer(pkt.buffer);
    free_packet(p);
    return;
  }
  pkt.rx_time_ns = now_ns_;
  pkt.next = kNoNode;
  if (dst.inbox_tail_ == kNoNode) {
    dst.inbox_head_ = p;
  } else {
    packets_[dst.inbox_tail_].next = p;
  }
  dst.inbox_tail_ = p;
  ++dst.inbox_count_;
  ++counters_.delivered;
  if (!dst.ready_) {
    dst.ready_ = true;
    ready_.push_back(pkt.to);
  }
  std::uint64_t head = 0;
  std::memcpy(&head, buffer(pkt.buffer), std::min<std::uint32_t>(pkt.len, 8));
  trace_hash_ = mix(trace_hash_, pair_key(pkt.to, pkt.from));
  trace_hash_ = mix(trace_hash_, (static_cast<std::uint64_t>(pkt.len) << 32) ^ now_ns_);
  trace_hash_ = mix(trace_hash_, head);
}

std::uint64_t SimNetwork::next_event_ns() const {
  return heap_.empty() ? UINT64_MAX : heap_.front().time_ns;
}

std::size_t SimNetwork::advance_to(std::uint64_t t) {
  RUMOR_ASSERT(t >= now_ns_);
  std::size_t n = 0;
  while (!heap_.empty() && heap_.front().time_ns <= t) {
    const Event e = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    heap_.pop_back();
    now_ns_ = e.time_ns;
    deliver(e.packet);
    ++n;
  }
  now_ns_ = t;
  return n;
}

void SimNetwork::take_ready(std::vector<NodeId>* out) {
  for (NodeId id : ready_) nodes_[id]->ready_ = false;
  out->insert(out->end(), ready_.begin(), ready_.end());
  ready_.clear();
}

void SimNetwork::set_link(NodeId from, NodeId to, const LinkConfig& l) {
  links_[pair_key(from, to)] = l;
}
void SimNetwork::clear_links() { links_.clear(); }
void SimNetwork::cut(NodeId from, NodeId to) { cuts_.insert(pair_key(from, to)); }
void SimNetwork::cut_both(NodeId a, NodeId b) {
  cut(a, b);
  cut(b, a);
}
void SimNetwork::set_group(NodeId node, std::uint32_t group) {
  nodes_[node]->group_ = group;
  groups_used_ = std::max(groups_used_, group + 1);
}
void SimNetwork::cut_groups(std::uint32_t from, std::uint32_t to) {
  group_cuts_.insert(pair_key(from, to));
  groups_used_ = std::max(groups_used_, std::max(from, to) + 1);
}
void SimNetwork::partition(std::span<const NodeId> side) {
  const std::uint32_t g = groups_used_++;
  for (NodeId n : side) nodes_[n]->group_ = g;
  for (std::uint32_t other = 0; other < g; ++other) {
    cut_groups(g, other);
    cut_groups(other, g);
  }
}
void SimNetwork::heal() {
  cuts_.clear();
  group_cuts_.clear();
  for (auto& n : nodes_) n->group_ = 0;
  groups_used_ = 1;
}
void SimNetwork::pause(NodeId node) { nodes_[node]->paused_ = true; }
void SimNetwork::resume(NodeId node) {
  SimTransport& n = *nodes_[node];
  n.paused_ = false;
  if (n.inbox_count_ > 0 && !n.ready_) {
    n.ready_ = true;
    ready_.push_back(node);
  }
}

std::size_t SimNetwork::memory_bytes() const {
  std::size_t m = sizeof(*this);
  m += nodes_.capacity() * sizeof(nodes_[0]) + nodes_.size() * sizeof(SimTransport);
  // unordered_map: a node per entry (key, value, next pointer, cached hash) plus buckets.
  m += by_address_.size() * (sizeof(Address) + sizeof(NodeId) + 2 * sizeof(void*)) +
       by_address_.bucket_count() * sizeof(void*);
  m += chunks_.size() * (static_cast<std::size_t>(stride_) * kChunkBuffers);
  m += buffer_owner_.capacity() * sizeof(std::uint64_t) +
       free_buffers_.capacity() * sizeof(std::uint32_t);
  m += packets_.capacity() * sizeof(Packet) + heap_.capacity() * sizeof(Event);
  m += ready_.capacity() * sizeof(NodeId);
  return m;
}

Status SimNetwork::inject(const Address& from, const Address& to,
                          std::span<const std::byte> bytes) {
  if (bytes.size() > kDatagramBytesLimit) {
    return Status::error(Code::kTooLarge, "sim: inject of " + std::to_string(bytes.size()) +
                                              " bytes is beyond any UDP datagram");
  }
  const NodeId dst = find(to);
  if (dst == kNoNode) {
    drop(DropReason::kNoRoute);
    return Status::ok();  // like UDP: nobody there, nobody told
  }
  const std::uint32_t b = alloc_buffer(dst, kInFlight);
  if (b == kNoNode) return Status::error(Code::kBusy, "sim: buffer pool exhausted");
  const std::uint32_t p = alloc_packet();
  Packet& pkt = packets_[p];
  pkt.peer = from;
  pkt.buffer = b;
  pkt.len = static_cast<std::uint32_t>(bytes.size());
  pkt.from = kNoNode;
  pkt.to = dst;
  if (!bytes.empty()) {
    std::memcpy(buffer(b), bytes.data(), std::min<std::size_t>(bytes.size(), stride_));
  }
  ++counters_.transmitted;
  schedule(p, now_ns_ + link(kNoNode, dst).latency_ns);
  return Status::ok();
}

// ---- SimTransport ----

TransportInfo SimTransport::info() const {
  TransportInfo i;
  i.backend = "sim";
  i.datagram_bytes_max = net_->config_.datagram_bytes_max;
  i.features = "virtual_time seed=" + std::to_string(net_->config_.seed);
  return i;
}

std::size_t SimTransport::receive(std::span<Datagram> out) {
  if (out.empty() || paused_ || inbox_count_ == 0) return 0;
  const std::uint32_t room = rx_lent_ >= rx_max_ ? 0 : rx_max_ - rx_lent_;
  if (room == 0) {
    ++counters_.rx_no_buffer;  // the caller holds every receive buffer
    return 0;
  }
  const std::size_t n = std::min<std::size_t>({out.size(), room, inbox_count_});
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t p = inbox_head_;
    SimNetwork::Packet& pkt = net_->packets_[p];
    inbox_head_ = pkt.next;
    if (inbox_head_ == kNoNode) inbox_tail_ = kNoNode;
    --inbox_count_;
    net_->buffer_owner_[pkt.buffer] = (static_cast<std::uint64_t>(id_) << 8) | SimNetwork::kLentRx;
    Datagram& d = out[i];
    d.data = net_->buffer(pkt.buffer);
    d.len = pkt.len;
    d.capacity = pkt.len;
    d.handle = pkt.buffer;
    d.peer = pkt.peer;
    d.rx_time_ns = pkt.rx_time_ns;
    ++rx_lent_;
    ++counters_.datagrams_received;
    counters_.bytes_received += pkt.len;
    net_->free_packet(p);
  }
  return n;
}

std::size_t SimTransport::acquire(std::span<Datagram> out) {
  std::size_t n = 0;
  while (n < out.size() && tx_held_ < tx_max_) {
    const std::uint32_t b = net_->alloc_buffer(id_, SimNetwork::kLentTx);
    if (b == kNoNode) break;
    ++tx_held_;
    Datagram& d = out[n++];
    d.data = net_->buffer(b);
    d.len = 0;
    d.capacity = net_->config_.datagram_bytes_max;
    d.handle = b;
    d.peer = Address();
    d.rx_time_ns = 0;
  }
  if (n < out.size()) ++counters_.tx_no_buffer;
  return n;
}

Status SimTransport::send(std::span<const Datagram> batch) {
  Status first;
  for (const Datagram& d : batch) {
    RUMOR_ASSERT(d.handle < net_->buffer_owner_.size());
    RUMOR_ASSERT(net_->buffer_owner_[d.handle] ==
                 ((static_cast<std::uint64_t>(id_) << 8) | SimNetwork::kLentTx));
    Status refused;
    DropReason reason = DropReason::kOversized;
    Address peer = d.peer;
    if (d.len > net_->config_.datagram_bytes_max) {
      refused = Status::error(Code::kTooLarge,
                              "datagram is " + std::to_string(d.len) +
                                  " bytes, datagram_bytes_max is " +
                                  std::to_string(net_->config_.datagram_bytes_max));
    } else if (peer.empty()) {
      reason = DropReason::kBadAddress;
      refused = Status::error(Code::kInvalidArgument, "datagram has no destination address");
    } else if (address_.is_ipv4() && peer.is_ipv6()) {
      reason = DropReason::kBadAddress;
      refused = Status::error(Code::kInvalidArgument, "cannot send to IPv6 " + peer.to_string() +
                                                          " from IPv4 socket " +
                                                          address_.to_string());
    }
    if (!refused.is_ok()) {
      ++counters_.drops[static_cast<std::size_t>(reason)];
      net_->free_buffer(d.handle);
      --tx_held_;
      if (first.is_ok()) first = std::move(refused);
      continue;
    }
    const std::uint32_t p = net_->alloc_packet();
    SimNetwork::Packet& pkt = net_->packets_[p];
    pkt.peer = peer;
    pkt.buffer = d.handle;
    pkt.len = d.len;
    pkt.from = id_;
    net_->buffer_owner_[d.handle] = (static_cast<std::uint64_t>(id_) << 8) | SimNetwork::kPending;
    if (pending_tail_ == kNoNode) {
      pending_head_ = p;
    } else {
      net_->packets_[pending_tail_].next = p;
    }
    pending_tail_ = p;
  }
  return first;
}

void SimTransport::release(std::span<const Datagram> batch) {
  for (const Datagram& d : batch) {
    RUMOR_ASSERT(d.handle < net_->buffer_owner_.size());
    const std::uint64_t owner = net_->buffer_owner_[d.handle];
    RUMOR_ASSERT((owner >> 8) == id_);  // released on the transport that lent it
    const auto state = static_cast<std::uint8_t>(owner & 0xff);
    if (state == SimNetwork::kLentRx) {
      RUMOR_ASSERT(rx_lent_ > 0);
      --rx_lent_;
    } else {
      RUMOR_ASSERT(state == SimNetwork::kLentTx);  // released twice, or released once queued
      RUMOR_ASSERT(tx_held_ > 0);
      --tx_held_;
    }
    net_->free_buffer(d.handle);
  }
}

Status SimTransport::flush() {
  if (paused_ || pending_head_ == kNoNode) return Status::ok();
  ++counters_.submits;
  // Bounded by the pending list, itself bounded by send_buffers.
  while (pending_head_ != kNoNode) {
    const std::uint32_t p = pending_head_;
    SimNetwork::Packet& pkt = net_->packets_[p];
    pending_head_ = pkt.next;
    pkt.next = kNoNode;
    --tx_held_;
    ++counters_.datagrams_sent;
    counters_.bytes_sent += pkt.len;
    net_->transmit(id_, p);
  }
  pending_tail_ = kNoNode;
  return Status::ok();
}

Status SimTransport::poll(std::uint64_t timeout_ns, std::uint32_t wait_count) {
  (void)timeout_ns;
  (void)wait_count;
  return flush();
}

}  // namespace rumor::io
