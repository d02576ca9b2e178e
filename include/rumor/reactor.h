// rumor::Reactor: runs a rumor::Node on real UDP, one thread per owner core (docs/agent.md "The
// reactor"). It opens a Transport (io_uring, or sendmmsg where io_uring is missing or
// forbidden, and says why), starts a thread pinned to a CPU where allowed, and loops: wait for
// the node's next deadline or a datagram, reap a batch, hand it over, tick, run posted commands,
// dispatch callbacks (never while a packet is being processed), and submit the sends in one
// system call. engine/runtime/reactor.h has the loop and the wake-up protocol.
//
//   auto reactor = rumor::Reactor::open(rc);        // binds: a taken port fails here
//   cfg.advertise = (*reactor)->local_address();
//   auto node = rumor::Node::create(cfg, clock);
//   (*reactor)->start(**node, clock);               // the node starts on the reactor threads
//   (*node)->set("k", "v");                         // any thread; wakes the reactor
//   (*reactor)->stop();                             // leave announced, flushed, thread joined
//
// Cores: with `cores` = N > 1 the Reactor runs N threads, one per owner core of the Node
// (store.owners must be N). Each has its own Transport on the node's port (SO_REUSEPORT), and a
// classic BPF program on the port steers every datagram to the socket of the core owning the
// shard named at header byte 4; where the kernel refuses the program, the node hands misdirected
// datagrams over in user space. docs/agent.md "Threading model" has the whole picture.
//
// Thread-safety contract
// - open, start, stop, the destructor: one controlling thread (not the reactor's own).
// - wake, post, local_address, backend, backend_reason, transport_info, pin_note: any thread.
// - Node::set/del from any thread are queued by the node and ring the reactor's doorbell
//   (start() installs the node's waker), so they apply at the reactor's next turn. Stop writing
//   from other threads before destroying the Reactor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "rumor/node.h"
#include "rumor/status.h"
#include "rumor/time_source.h"
#include "rumor/transport.h"

namespace rumor {

struct ReactorConfig {
  TransportConfig transport;  // bind is required; datagram_bytes_max >= the node's
  std::uint32_t cores = 1;    // reactor threads and sockets; the node's store.owners
  bool kernel_steering = true;  // false: skip the BPF program (tests the user-space fallback)
  bool pin = true;            // pin the reactor threads (EPERM and EINVAL are ignored, reported)
  int cpu = -1;               // core 0's CPU; -1: the first CPU this process may run on (see
                              // taskset). Core k takes the k-th allowed CPU after it.
  std::uint32_t receive_batch = 64;               // datagrams lent per Transport::receive
  std::uint32_t receive_batches_per_turn_max = 4;  // then timers run, whatever is left waits
  std::uint32_t send_stash = 16;                  // send buffers acquired at a time
  std::uint32_t commands_per_turn_max = 256;
  std::uint32_t command_queue_depth = 1024;  // posted commands; a full queue answers kBusy
  std::uint32_t idle_wait_ms_max = 1000;     // longest sleep, whatever the deadline says
  std::uint32_t stop_flush_ms_max = 200;     // time allowed for the leave announcement to go out
  std::string thread_name = "rumor-reactor";  // at most 15 bytes are shown by the kernel

  Status validate() const;
};

// Reactor-thread counters (read them on the reactor thread, e.g. from a posted command).
struct ReactorCounters {
  std::uint64_t turns = 0;
  std::uint64_t idle_turns = 0;          // woke with nothing received
  std::uint64_t datagrams = 0;           // handed to the node
  std::uint64_t batches = 0;             // receive() calls that returned datagrams
  std::uint64_t batch_max = 0;           // largest batch seen
  std::uint64_t ticks = 0;
  std::uint64_t events_dispatched = 0;
  std::uint64_t commands_run = 0;
  std::uint64_t doorbells_rung = 0;      // wake-up datagrams sent by other threads
  std::uint64_t doorbells_received = 0;
  std::uint64_t sink_empty = 0;          // the node asked for a send buffer and none was free
  std::uint64_t send_refused = 0;        // the transport refused a datagram (oversized, address)
  std::uint64_t poll_errors = 0;
};

class Reactor {
 public:
  // Opens the transport on config.transport.bind. Errors a person can act on: the address is
  // in use, cannot be bound, io_uring is forced but unavailable.
  static Result<std::unique_ptr<Reactor>> open(const ReactorConfig& config);
  ~Reactor();  // stop()s if needed
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  Address local_address() const;
  const std::string& backend() const;         // "uring" or "mmsg"
  const std::string& backend_reason() const;  // why, for the log
  TransportInfo transport_info() const;
  std::uint32_t cores() const;
  // How datagrams reach their core: "kernel (reuseport BPF on N sockets)", or the user-space
  // fallback and why. "one core" for a single-core reactor.
  const std::string& steering() const;

  // Starts the reactor threads, each starting its core of the node (NodeDriver::start). `node`
  // and `time` (the node's own TimeSource) must outlive stop(). Returns once the threads run
  // (and are pinned or not).
  Status start(Node& node, TimeSource& time);
  // Graceful: the other cores stop, then core 0 announces the leave, the sends are flushed
  // (bounded by stop_flush_ms_max), the threads are joined. Idempotent.
  void stop();
  bool running() const;

  // ---- any thread ----
  // Makes the reactor take a turn now (e.g. after Node::set from this thread).
  void wake();
  // Runs fn on the reactor thread at its next turn (Node driver-thread calls are allowed there:
  // members(), counters()). kBusy when the queue is full, kUnavailable when not running.
  // post() goes to core 0; post_core(k, fn) to core k.
  Status post(std::function<void()> fn);
  Status post_core(std::uint32_t core, std::function<void()> fn);
  // "pinned to CPU 3", "not pinned: sched_setaffinity: Operation not permitted", "not pinned
  // (disabled)". Empty before start().
  std::string pin_note() const;

  // ---- reactor thread (from a posted command): core 0's, or core k's on core k ----
  ReactorCounters counters(std::uint32_t core = 0) const;
  const TransportCounters& transport_counters(std::uint32_t core = 0) const;
  // On core 0: its live counters plus every other core's as of its last turn (batch_max is
  // the largest, the rest are sums).
  ReactorCounters counters_all_cores() const;
  TransportCounters transport_counters_all_cores() const;

 private:
  struct Impl;
  explicit Reactor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rumor
