#include "io/steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "io/udp_base.h"

namespace rumor::io {

Status attach_reuseport_steering(int socket_fd, std::uint32_t sockets) {
  if (sockets == 0) return Status::error(Code::kInvalidArgument, "steering: zero sockets");
  // For reuseport programs the packet starts at the UDP payload. Absolute loads read network
  // byte order, hence the big-endian shard id; a load past the end returns 0 (socket 0).
  sock_filter code[] = {
      {BPF_LD | BPF_H | BPF_ABS, 0, 0, static_cast<std::uint32_t>(kShardIdOffset)},
      {BPF_ALU | BPF_MOD | BPF_K, 0, 0, sockets},
      {BPF_RET | BPF_A, 0, 0, 0},
  };
  static_assert(kShardIdBytes == 2, "the program loads a half-word");
  sock_fprog prog{static_cast<unsigned short>(sizeof(code) / sizeof(code[0])), code};
  if (setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
    const int err = errno;
    return Status::error(Code::kUnavailable, "SO_ATTACH_REUSEPORT_CBPF: " + errno_text(err));
  }
  return Status::ok();
}

Handoff::Handoff(std::uint32_t cores, std::uint32_t capacity)
    : cores_(cores), capacity_(capacity) {
  RUMOR_ASSERT(cores > 0);
  RUMOR_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
  const std::size_t pairs = static_cast<std::size_t>(cores) * cores;
  forward_.reserve(pairs);
  back_.reserve(pairs);
  for (std::size_t i = 0; i < pairs; ++i) {
    // The diagonal is never used (a core does not hand datagrams to itself); keep it tiny.
    const bool self = i / cores == i % cores;
    forward_.push_back(std::make_unique<SpscQueue<Datagram>>(self ? 2 : capacity));
    back_.push_back(std::make_unique<SpscQueue<Datagram>>(self ? 2 : capacity));
  }
  outstanding_.assign(pairs, 0);
  counters_ = std::make_unique<CoreCounters[]>(cores);
}

bool Handoff::forward(std::uint32_t from, std::uint32_t to, const Datagram& d) {
  RUMOR_ASSERT(from < cores_);
  RUMOR_ASSERT(to < cores_);
  RUMOR_ASSERT(from != to);
  std::uint32_t& out = outstanding_[static_cast<std::size_t>(from) * cores_ + to];
  // The credit: what `to` holds of ours, plus what sits in either queue, stays within the
  // return queue's capacity, so give_back() always finds room.
  if (out >= capacity_ || !forward_queue(from, to).push(d)) {
    ++counters_[from].refused;
    return false;
  }
  ++out;
  ++counters_[from].forwarded;
  return true;
}

std::size_t Handoff::take(std::uint32_t to, std::span<Handed> out) {
  RUMOR_ASSERT(to < cores_);
  std::size_t n = 0;
  for (std::uint32_t from = 0; from < cores_ && n < out.size(); ++from) {
    if (from == to) continue;
    SpscQueue<Datagram>& q = forward_queue(from, to);
    while (n < out.size()) {
      std::optional<Datagram> d = q.pop();
      if (!d) break;
      out[n].datagram = *d;
      out[n].from = from;
      ++n;
    }
  }
  counters_[to].taken += n;
  return n;
}

void Handoff::give_back(std::uint32_t to, const Handed& h) {
  RUMOR_ASSERT(to < cores_);
  RUMOR_ASSERT(h.from < cores_);
  const bool ok = back_queue(to, h.from).push(h.datagram);
  RUMOR_ASSERT(ok);  // guaranteed by the credit in forward()
}

std::size_t Handoff::reclaim(std::uint32_t from, std::span<Datagram> out) {
  RUMOR_ASSERT(from < cores_);
  std::size_t n = 0;
  for (std::uint32_t owner = 0; owner < cores_ && n < out.size(); ++owner) {
    if (owner == from) continue;
    const std::size_t got = back_queue(owner, from).pop_batch(out.begin() + static_cast<std::ptrdiff_t>(n),
                                                              out.size() - n);
    outstanding_[static_cast<std::size_t>(from) * cores_ + owner] -=
        static_cast<std::uint32_t>(got);
    n += got;
  }
  return n;
}

}  // namespace rumor::io
