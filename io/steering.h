// Steering datagrams to the core that owns their shard (DESIGN.md "Thread-per-core").
//
// Each core has its own socket on the node's port (SO_REUSEPORT). Every rumor packet names its
// target virtual shard at kShardIdOffset (rumor/transport.h), and shard s belongs to core
// s % cores. Two ways to get a datagram to its owner:
//
//  1. In the kernel: attach_reuseport_steering() installs a classic BPF program on the port's
//     reuseport group that reads the two shard bytes and returns shard % sockets, the index of
//     the socket to deliver to. Sockets are indexed in the order they joined the group, so open
//     them in core order (and note that closing one moves the last socket into its slot).
//     Datagrams too short to carry a shard id go to socket 0.
//
//  2. In user space, where the program cannot be attached (no permission, another program on
//     the port, a backend without sockets): the core that received a datagram it does not own
//     forwards it through a Handoff. Buffers are not copied: the datagram stays lent by the
//     receiving core's transport, travels to the owner through a single-producer/single-consumer
//     queue, and comes back through a second one so the lending core releases it (an object is
//     freed on the core that made it). Each core may have at most `capacity` datagrams out with
//     each other core, so the return queues can never fill.
//
// Thread safety: Handoff methods take the calling core's index; each (from, to) queue has one
// producer and one consumer thread, and per-core counters are written only by their core.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/spsc_queue.h"
#include "rumor/transport.h"

namespace rumor::io {

// The core (socket index) that owns `shard` among `cores`: the same rule the BPF program runs.
inline std::uint32_t owner_core(std::uint16_t shard, std::uint32_t cores) {
  return static_cast<std::uint32_t>(shard) % cores;
}

// Installs the shard-steering program on the reuseport group of `socket_fd` (any socket of the
// group). kUnavailable when the kernel refuses; the caller falls back to a Handoff.
Status attach_reuseport_steering(int socket_fd, std::uint32_t sockets);

struct Handed {
  Datagram datagram;
  std::uint32_t from = 0;  // the core whose transport lent it, and that must release it
};

class Handoff {
 public:
  // capacity: a power of two, the queue depth and the per-pair credit.
  Handoff(std::uint32_t cores, std::uint32_t capacity);

  std::uint32_t cores() const { return cores_; }

  // Core `from` hands `d` (lent by its transport) to core `to`. False when `to` is not taking
  // them fast enough (queue full or credit used up): the caller releases `d` and counts it.
  bool forward(std::uint32_t from, std::uint32_t to, const Datagram& d);
  // Core `to` takes what other cores forwarded to it; returns how many.
  std::size_t take(std::uint32_t to, std::span<Handed> out);
  // Core `to` is done with a datagram it took: back to its lender. Never fails.
  void give_back(std::uint32_t to, const Handed& h);
  // Core `from` collects its datagrams that others are done with, to release to its transport.
  std::size_t reclaim(std::uint32_t from, std::span<Datagram> out);

  struct alignas(kCacheLineBytes) CoreCounters {
    std::uint64_t forwarded = 0;
    std::uint64_t refused = 0;  // forward() returned false
    std::uint64_t taken = 0;
  };
  const CoreCounters& counters(std::uint32_t core) const { return counters_[core]; }

 private:
  SpscQueue<Datagram>& forward_queue(std::uint32_t from, std::uint32_t to) {
    return *forward_[static_cast<std::size_t>(from) * cores_ + to];
  }
  SpscQueue<Datagram>& back_queue(std::uint32_t from, std::uint32_t to) {
    return *back_[static_cast<std::size_t>(from) * cores_ + to];
  }

  std::uint32_t cores_;
  std::uint32_t capacity_;
  std::vector<std::unique_ptr<SpscQueue<Datagram>>> forward_;  // [from][to]
  std::vector<std::unique_ptr<SpscQueue<Datagram>>> back_;     // [owner][lender]
  // outstanding_[from * cores + to]: written only by core `from`.
  std::vector<std::uint32_t> outstanding_;
  std::unique_ptr<CoreCounters[]> counters_;
};

}  // namespace rumor::io
