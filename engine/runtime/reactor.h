// The reactor's loop, independent of what it drives (docs/agent.md "The reactor"). One ReactorLoop belongs to one thread and ties one sans-I/O state machine
// (a `Driven`: a rumor::Node, or a fake in tests) to one Transport and a clock. A turn is:
//
//   poll      one system call: submit the previous turn's sends, wait until the driven
//             machine's next deadline, a datagram, or a wake-up (whichever comes first)
//   reap      lend received datagrams in batches, hand each batch to receive(), give it back
//   tick      timers (and the node's queued cross-thread writes)
//   commands  closures posted from other threads, run here (bounded per turn)
//   dispatch  subscription and membership callbacks, after the batch, never inside a packet
//   flush     replies and timer sends were queued into the transport as they were produced;
//             the next poll submits them all at once
//
// Wake-ups from other threads (a posted command, a write queued to the node) use a doorbell: a
// zero-length UDP datagram sent from a private socket to the reactor's own socket. That is the
// one wake-up every backend already waits on (io_uring's multishot receive, ppoll on the
// socket), so the loop keeps exactly one blocking point without reaching inside the transport.
// Rings are coalesced: a waker rings only when the loop is parked (or about to park) and nobody
// rang since it parked, so a burst of writes costs one datagram. No rumor packet is empty, so
// the loop recognises a doorbell by its length and never passes one to the driven machine.
//
// Thread-safety contract
// - run_turn, run_until_stopped, start/stop of the driven machine, counters(): the loop thread.
// - wake, post, request_stop, stop_requested: any thread, lock-free (atomics and a bounded
//   Vyukov MPSC queue). Nothing on the packet path takes a lock: receive, tick, dispatch and the
//   sink touch only loop-owned state (tests/agent/reactor_test.cc counts pthread_mutex_lock
//   calls on the loop thread and expects none in steady state).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/mpsc_queue.h"
#include "base/published.h"
#include "base/spsc_queue.h"
#include "rumor/driver.h"
#include "rumor/reactor.h"
#include "rumor/time_source.h"
#include "rumor/transport.h"

namespace rumor {

// What a reactor drives: one core of a rumor::Node through CoreDriven (engine/runtime/reactor.cc);
// fakes in tests. Methods are NodeDriver's for that core, with the same meaning.
class Driven {
 public:
  virtual ~Driven() = default;
  virtual void start(PacketSink& out) = 0;
  virtual void stop(PacketSink& out) = 0;
  // A batch of datagrams, lent until the call returns.
  virtual void receive(std::span<const ReceivedDatagram> batch, PacketSink& out) = 0;
  virtual void tick(PacketSink& out) = 0;
  virtual std::uint64_t next_deadline_ms() const = 0;
  virtual std::size_t dispatch_events() = 0;
};

// PacketSink over a Transport, zero copy: buffer() lends a transport send buffer (acquired a few
// at a time into a small stash), commit() hands it to Transport::send, which only queues it; the
// loop's next poll() submits everything queued in one system call.
class TransportSink final : public PacketSink {
 public:
  TransportSink(Transport& transport, std::uint32_t stash_max);
  ~TransportSink() override;
  TransportSink(const TransportSink&) = delete;
  TransportSink& operator=(const TransportSink&) = delete;

  std::span<std::byte> buffer() override;
  void commit(const Address& to, std::size_t len) override;

  // Gives stashed, unused buffers back to the transport (at shutdown).
  void release_stash();

  std::uint64_t committed() const { return committed_; }
  std::uint64_t empty_buffers() const { return empty_buffers_; }  // buffer() found none
  std::uint64_t refused() const { return refused_; }  // send() refused (counted by transport)

 private:
  Transport& transport_;
  std::vector<Datagram> stash_;  // acquired, not yet handed out; stash_[0, stash_len_)
  std::size_t stash_len_ = 0;
  Datagram current_;             // handed out by buffer(), not yet committed
  bool has_current_ = false;
  std::uint64_t committed_ = 0, empty_buffers_ = 0, refused_ = 0;
};

class ReactorLoop {
 public:
  // The transport must outlive the loop. Opens the doorbell socket (a UDP socket connected to
  // the transport's local address; a wildcard bind is reached through loopback).
  // doorbell_shard >= 0: the loop's socket shares its port with other cores' (SO_REUSEPORT
  // with shard steering), so its doorbell is a short datagram naming that shard, which the
  // steering program delivers to this loop's socket; -1: a zero-length datagram.
  static Result<std::unique_ptr<ReactorLoop>> create(const ReactorConfig& config,
                                                     Transport& transport, TimeSource& time,
                                                     int doorbell_shard = -1);
  // A doorbell datagram: zero-length, or kDoorbellBytes starting with kDoorbellMagic (no
  // rumor packet is that short; its magic differs).
  static constexpr std::size_t kDoorbellBytes = kShardIdOffset + 2;
  static bool is_doorbell(std::span<const std::byte> d);
  ~ReactorLoop();
  ReactorLoop(const ReactorLoop&) = delete;
  ReactorLoop& operator=(const ReactorLoop&) = delete;

  // ---- loop thread ----
  // Starts the driven machine, runs turns until request_stop(), then stops it (announcing leave),
  // dispatches its last events and flushes what it sent, bounded by stop_flush_ms_max.
  void run(Driven& driven);
  // Single steps, for tests and embedders with their own loop: one turn, waiting at most
  // `wait_ms_max` (the loop's own deadline still applies).
  void start(Driven& driven);
  void run_turn(Driven& driven, std::uint64_t wait_ms_max);
  void stop(Driven& driven);
  ReactorCounters counters() const;
  TransportSink& sink() { return sink_; }

  // ---- any thread ----
  // Copies of counters() and the transport's counters as of the end of the loop's last turn
  // (relaxed atomics: statistics), for summing the cores of a multi-core reactor.
  ReactorCounters published_counters() const;
  TransportCounters published_transport_counters() const;

  // ---- any thread ----
  void wake();
  // Runs fn on the loop thread at its next turn. Code::kBusy when the queue is full,
  // Code::kUnavailable once the loop has stopped.
  Status post(std::function<void()> fn);
  void request_stop();
  bool stop_requested() const { return stop_.load(std::memory_order_acquire); }

 private:
  ReactorLoop(const ReactorConfig& config, Transport& transport, TimeSource& time, int doorbell,
              int doorbell_shard);
  std::size_t run_commands(std::size_t max);
  void reap(Driven& driven);
  void flush_after_stop();

  const ReactorConfig config_;
  Transport& transport_;
  TimeSource& time_;
  TransportSink sink_;
  std::vector<Datagram> batch_;
  std::vector<ReceivedDatagram> received_;  // batch_ as the driven machine sees it
  MpscQueue<std::function<void()>> commands_;

  // Loop-thread counters (plain: one writer, read through counters() on the same thread).
  ReactorCounters c_;

  // Wake-up protocol (Dekker's pattern; both sides use seq_cst so that at least one of them sees
  // the other's store):
  //   waker: wakes_.fetch_add(1); if (parked_) and not rung_ since parking: send a doorbell
  //   loop:  parked_ = true; if (wakes_ != wakes seen before this turn) do not sleep
  // Either the loop sees the new wake count and does not sleep, or the waker sees parked_ and
  // rings. rung_ coalesces a burst of wakers into one datagram per park.
  alignas(kCacheLineBytes) std::atomic<std::uint64_t> wakes_{0};
  alignas(kCacheLineBytes) std::atomic<bool> parked_{false};
  std::atomic<bool> rung_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};  // no more commands accepted
  std::atomic<std::uint64_t> doorbells_rung_{0};  // relaxed: a statistic
  std::uint64_t wakes_seen_ = 0;  // loop thread
  void publish();
  Published<ReactorCounters> pub_reactor_;
  Published<TransportCounters> pub_transport_;
  int doorbell_fd_ = -1;
  std::array<std::byte, kDoorbellBytes> doorbell_{};  // what a ring sends (doorbell_len_ bytes)
  std::size_t doorbell_len_ = 0;
  bool started_ = false;
  bool backlog_ = false;  // the last turn ran its maximum of commands: more may be queued
};

}  // namespace rumor
