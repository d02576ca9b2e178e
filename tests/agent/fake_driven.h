// A fake sans-I/O machine for reactor tests: it echoes, or pings a peer with a window of
// datagrams in flight, says "bye" when stopped, and checks that callbacks are never dispatched
// from inside receive(). Counters are atomics so the test thread can watch them.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "engine/runtime/reactor.h"

namespace rumor::testing {

class FakeDriven final : public Driven {
 public:
  FakeDriven(TimeSource& time, Address peer, std::uint64_t pings, std::uint32_t window)
      : time_(time), peer_(peer), pings_(pings), window_(window) {}

  void start(PacketSink& out) override {
    started.store(true);
    for (std::uint32_t i = 0; i < window_ && sent_ < pings_; ++i) send_ping(out);
  }
  void stop(PacketSink& out) override {
    if (!peer_.empty()) send(out, "bye", 3);
    stopped.store(true);
  }
  void receive(std::span<const ReceivedDatagram> batch, PacketSink& out) override {
    for (const ReceivedDatagram& d : batch) receive_one(d.from, d.bytes, out);
  }
  void receive_one(const Address& from, std::span<const std::byte> d, PacketSink& out) {
    RUMOR_ASSERT(!in_receive_);
    in_receive_ = true;
    received.fetch_add(1, std::memory_order_relaxed);
    if (d.size() == 3 && std::memcmp(d.data(), "bye", 3) == 0) {
      byes.fetch_add(1, std::memory_order_relaxed);
    } else if (d.size() >= 1 && static_cast<char>(d[0]) == 'P') {
      // A ping: echo it as a pong.
      std::span<std::byte> b = out.buffer();
      if (!b.empty()) {
        std::memcpy(b.data(), d.data(), d.size());
        b[0] = std::byte{'Q'};
        out.commit(from, d.size());
      }
    } else if (d.size() >= 1 && static_cast<char>(d[0]) == 'Q') {
      pongs.fetch_add(1, std::memory_order_relaxed);
      ++pending_events_;
      if (sent_ < pings_) send_ping(out);
    }
    in_receive_ = false;
  }
  void tick(PacketSink& out) override {
    (void)out;
    ticks.fetch_add(1, std::memory_order_relaxed);
    if (tick_at_ms_ != 0 && time_.now_ms() >= tick_at_ms_) {
      tick_at_ms_ = 0;
      deadline_ticks.fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::uint64_t next_deadline_ms() const override {
    if (tick_at_ms_ != 0) return tick_at_ms_;
    return time_.now_ms() + idle_ms;  // nothing to do: sleep long
  }
  std::size_t dispatch_events() override {
    RUMOR_ASSERT(!in_receive_);
    const std::size_t n = pending_events_;
    pending_events_ = 0;
    events.fetch_add(n, std::memory_order_relaxed);
    return n;
  }

  // Loop thread (from a posted command): ask for a tick at `ms`.
  void set_deadline(std::uint64_t ms) { tick_at_ms_ = ms; }

  std::atomic<bool> started{false}, stopped{false};
  std::atomic<std::uint64_t> received{0}, pongs{0}, byes{0}, ticks{0}, events{0},
      deadline_ticks{0};
  std::uint64_t idle_ms = 3'600'000;

 private:
  void send_ping(PacketSink& out) {
    char msg[9] = {'P'};
    const std::uint64_t seq = sent_++;
    std::memcpy(msg + 1, &seq, sizeof(seq));
    send(out, msg, sizeof(msg));
  }
  void send(PacketSink& out, const char* p, std::size_t n) {
    std::span<std::byte> b = out.buffer();
    if (b.empty()) return;
    std::memcpy(b.data(), p, n);
    out.commit(peer_, n);
  }

  TimeSource& time_;
  Address peer_;
  std::uint64_t pings_;
  std::uint32_t window_;
  std::uint64_t sent_ = 0;
  std::uint64_t tick_at_ms_ = 0;
  std::size_t pending_events_ = 0;
  bool in_receive_ = false;
};

}  // namespace rumor::testing
