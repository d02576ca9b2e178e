// rumor::NodeDriver: the driver half of a rumor::Node, for what runs it (the reactor,
// include/rumor/reactor.h; the simulator; an embedder with its own event loop). The node is a
// sans-I/O state machine: given the time, incoming datagrams and the driver's calls, it writes
// outgoing datagrams into a PacketSink and says when it next needs a tick.
//
// Cores: a node's virtual shards are spread over store.owners cores (shard s on core
// s % owners). The home core (0) also runs membership, rumor mongering, the sync schedule and
// callbacks; every core merges entries for its shards, reconciles them with peers and answers
// for them. A single-core node has only core 0, and the calls without a core argument are for
// it. Cores exchange work through lock-free single-producer/single-consumer queues;
// docs/agent.md "Threading model" has the picture.
//
// Thread-safety contract
// - Each core is driven by one thread at a time (its own reactor thread; in the simulator one
//   thread drives every core of every node): start, stop, receive, tick and next_deadline_ms
//   for core c come from core c's driver thread; dispatch_events, running and live_members
//   from the home core's.
// - Cores start in any order (each on its own thread); core 0 stops last, so the leave it
//   announces is the node's last word.
// - set_waker: before start, from the thread that will start the node.
// - Nothing assumes a driver thread belongs to this node alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "rumor/node.h"
#include "rumor/transport.h"

namespace rumor {

// Where a node writes the datagrams it wants to send. The driver hands one in with every call
// that may send; buffers come from the transport (zero copy) or from the simulator.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  // A buffer to encode one datagram into (at least datagram_bytes_max bytes), or an empty span
  // when none is available right now (back-pressure: the node counts what it could not send).
  virtual std::span<std::byte> buffer() = 0;
  // Sends the first len bytes of the buffer last returned by buffer() to `to`.
  virtual void commit(const Address& to, std::size_t len) = 0;
};
// One received datagram, as the driver lends it: valid until the receive call returns.
struct ReceivedDatagram {
  Address from;
  std::span<const std::byte> bytes;
};

class NodeDriver {
 public:
  // The driver half of `node` (owned by it: valid while the node lives).
  static NodeDriver& of(Node& node);

  std::uint32_t cores() const;
  // The core a received datagram is for: its target shard (transport.h kShardIdOffset) modulo
  // cores. 0 for a single-core node or a datagram too short to say.
  std::uint32_t core_of(std::span<const std::byte> datagram) const;

  // Core 0: announces itself to the seeds (if any) and begins probing and gossiping.
  void start(std::uint32_t core, PacketSink& out);
  // Core 0: a graceful leave, announced to a few members; the node then answers nothing.
  void stop(std::uint32_t core, PacketSink& out);
  // A batch of datagrams that arrived at `core`; the entries of all of them merge as one batch.
  void receive(std::uint32_t core, std::span<const ReceivedDatagram> batch, PacketSink& out);
  void receive(std::uint32_t core, const Address& from, std::span<const std::byte> datagram,
               PacketSink& out);
  // Timers, queued cross-thread writes and work handed over by other cores.
  void tick(std::uint32_t core, PacketSink& out);
  // The earliest time (TimeSource ms) at which tick(core) has work; 0 when it has work now.
  // Drivers sleep until then or until a datagram arrives.
  std::uint64_t next_deadline_ms(std::uint32_t core) const;
  // Called (on any thread) when work is queued for `core` from another thread, so its driver
  // wakes up now instead of at its deadline. Must stay callable while other threads may write.
  void set_waker(std::uint32_t core, std::function<void()> waker);

  // Single-core shorthands: core 0.
  void start(PacketSink& out) { start(0, out); }
  void stop(PacketSink& out) { stop(0, out); }
  void receive(const Address& from, std::span<const std::byte> datagram, PacketSink& out) {
    receive(0, from, datagram, out);
  }
  void tick(PacketSink& out) { tick(0, out); }
  std::uint64_t next_deadline_ms() const { return next_deadline_ms(0); }

  // ---- home core's driver thread ----
  // Runs queued subscription and membership callbacks. Returns how many ran.
  std::size_t dispatch_events();
  bool running() const;
  // Alive and suspect members other than this node.
  std::size_t live_members() const;

 private:
  friend class Node;
  explicit NodeDriver(NodeImpl& impl) : impl_(impl) {}
  NodeImpl& impl_;
};

}  // namespace rumor
