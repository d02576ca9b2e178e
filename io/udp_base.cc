#include "io/udp_base.h"

#include <netinet/udp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "base/clock.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RUMOR_IO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RUMOR_IO_ASAN 1
#endif

#ifdef RUMOR_IO_ASAN
extern "C" void __asan_poison_memory_region(void const volatile* addr, std::size_t size);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
#endif

namespace rumor::io {

void poison(const void* p, std::size_t n) {
#ifdef RUMOR_IO_ASAN
  __asan_poison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

bool poisoning() {
#ifdef RUMOR_IO_ASAN
  return true;
#else
  return false;
#endif
}

void unpoison(const void* p, std::size_t n) {
#ifdef RUMOR_IO_ASAN
  __asan_unpoison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}

std::string errno_text(int err) {
  const char* text = strerrordesc_np(err);  // static strings, no locale, no shared buffer
  return text != nullptr ? std::string(text) : "errno " + std::to_string(err);
}

Status errno_status(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += errno_text(err);
  m += " (errno ";
  m += std::to_string(err);
  m += ')';
  return Status::error(Code::kIo, std::move(m));
}

// ---- MappedRegion ----

Result<MappedRegion> MappedRegion::map(std::size_t bytes) {
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return errno_status("mmap of " + std::to_string(bytes) + " bytes", errno);
  MappedRegion r;
  r.data_ = static_cast<std::byte*>(p);
  r.size_ = bytes;
  return r;
}

Status MappedRegion::populate() {
  if (size_ == 0) return Status::ok();
  if (madvise(data_, size_, MADV_POPULATE_WRITE) == 0) return Status::ok();
  const int err = errno;
  if (err == EINVAL) return Status::ok();  // before Linux 5.14: pages fault in on first use
  return errno_status("making " + std::to_string(size_) + " bytes of receive buffers resident",
                      err);
}

MappedRegion::MappedRegion(MappedRegion&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedRegion& MappedRegion::operator=(MappedRegion&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) {
      unpoison(data_, size_);
      munmap(data_, size_);
    }
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedRegion::~MappedRegion() {
  if (data_ != nullptr) {
    // ASan keeps shadow for mappings it did not make; clear ours before the range is reused.
    unpoison(data_, size_);
    munmap(data_, size_);
  }
}

// ---- Configuration and socket ----

namespace {
bool power_of_two(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

Status bad_config(std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); }
}  // namespace

Status validate_config(const TransportConfig& c) {
  if (c.bind.empty()) return bad_config("transport: bind address is not set");
  if (c.datagram_bytes_max == 0 || c.datagram_bytes_max > kDatagramBytesLimit) {
    return bad_config("transport: datagram_bytes_max is " + std::to_string(c.datagram_bytes_max) +
                      ", must be 1.." + std::to_string(kDatagramBytesLimit));
  }
  // 32768: the io_uring buffer ring's limit, and buffer ids are 16 bits.
  if (!power_of_two(c.recv_buffers) || c.recv_buffers > 32768) {
    return bad_config("transport: recv_buffers is " + std::to_string(c.recv_buffers) +
                      ", must be a power of two up to 32768");
  }
  if (!power_of_two(c.gro_recv_buffers) || c.gro_recv_buffers > 32768) {
    return bad_config("transport: gro_recv_buffers is " + std::to_string(c.gro_recv_buffers) +
                      ", must be a power of two up to 32768");
  }
  if (c.send_buffers == 0 || c.send_buffers > 65536) {
    return bad_config("transport: send_buffers is " + std::to_string(c.send_buffers) +
                      ", must be 1..65536");
  }
  if (c.socket_buffer_bytes > static_cast<std::uint32_t>(INT_MAX / 2)) {
    return bad_config("transport: socket_buffer_bytes is too large");
  }
  return Status::ok();
}

namespace {
// Root may exceed net.core.rmem_max/wmem_max with the *FORCE options; others get the capped
// plain option. Either way the kernel reports what it granted.
std::uint32_t size_socket_buffer(int fd, int force_opt, int opt, std::uint32_t bytes) {
  const int v = static_cast<int>(bytes);
  if (bytes != 0 && setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
  }
  int got = 0;
  socklen_t len = sizeof(got);
  if (getsockopt(fd, SOL_SOCKET, opt, &got, &len) != 0) return 0;
  return static_cast<std::uint32_t>(got);
}

// A port that no socket holds right now. Asking the kernel for "port 0" on a socket that has
// SO_REUSEPORT can hand out a port that another reuseport group of the same user already has
// (autobind treats a reuseport group it could join as free), and the two groups would then
// split each other's traffic. An exclusive socket's autobind never shares, so it picks the port;
// it is let go just before the real socket binds it.
Result<std::uint16_t> unshared_port(const Address& addr) {
  const int fd = socket(addr.family(), SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return errno_status("socket", errno);
  sockaddr_storage local{};
  socklen_t local_len = sizeof(local);
  const bool ok = bind(fd, addr.sockaddr_ptr(), addr.sockaddr_len()) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) == 0;
  const int err = errno;
  close(fd);
  if (!ok) return errno_status("bind " + addr.to_string(), err);
  return Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&local), local_len).port();
}
}  // namespace

Result<UdpSocket> open_udp_socket(const TransportConfig& config_in) {
  if (Status s = validate_config(config_in); !s) return s;
  TransportConfig config = config_in;
  if (config.reuse_port && config.bind.port() == 0) {
    auto port = unshared_port(config.bind);
    if (!port) return port.status();
    config.bind.set_port(port.value());
  }
  UdpSocket u;
  u.fd = socket(config.bind.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (u.fd < 0) return errno_status("socket", errno);
  auto fail = [&](const std::string& what) -> Status {
    const int err = errno;
    close(u.fd);
    return errno_status(what, err);
  };
  const int one = 1;
  if (config.reuse_port &&
      setsockopt(u.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return fail("setsockopt(SO_REUSEPORT)");
  }
  u.rcvbuf_bytes =
      size_socket_buffer(u.fd, SO_RCVBUFFORCE, SO_RCVBUF, config.socket_buffer_bytes);
  u.sndbuf_bytes =
      size_socket_buffer(u.fd, SO_SNDBUFFORCE, SO_SNDBUF, config.socket_buffer_bytes);
  // Kernel receive-queue drops arrive as a cumulative counter on each receive (not fatal if
  // unavailable: the counter just stays zero).
  (void)setsockopt(u.fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
  if (config.gso) {
    int seg = 0;
    socklen_t len = sizeof(seg);
    u.gso = getsockopt(u.fd, SOL_UDP, UDP_SEGMENT, &seg, &len) == 0;
  }
  if (config.gro) {
    u.gro = setsockopt(u.fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) == 0;
  }
  if (bind(u.fd, config.bind.sockaddr_ptr(), config.bind.sockaddr_len()) != 0) {
    return fail("bind " + config.bind.to_string());
  }
  sockaddr_in6 local{};
  socklen_t local_len = sizeof(local);
  if (getsockname(u.fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
    return fail("getsockname");
  }
  u.local = Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&local), local_len);
  // from_sockaddr unmaps ::ffff:a.b.c.d; a socket's own address keeps its family.
  if (config.bind.is_ipv6() && u.local.is_ipv4()) u.local = u.local.to_ipv6_mapped();
  return u;
}

// ---- GSO planning ----

std::size_t plan_send_groups(std::span<std::uint32_t> queue, const TxMeta* meta, bool gso,
                             std::span<std::uint64_t> scratch, std::span<SendGroup> out) {
  const std::size_t n = queue.size();
  RUMOR_ASSERT(out.size() >= n);
  if (!gso) {
    for (std::size_t i = 0; i < n; ++i) {
      out[i] = SendGroup{static_cast<std::uint32_t>(i), 1, meta[queue[i]].len};
    }
    return n;
  }
  // Bring each destination's datagrams together, keeping their order: sort (position, frame)
  // pairs by (peer, position). std::sort works in place: nothing is allocated per flush.
  bool mixed = false;
  for (std::size_t i = 1; i < n && !mixed; ++i) {
    mixed = !(meta[queue[i]].peer == meta[queue[0]].peer);
  }
  if (mixed) {
    RUMOR_ASSERT(scratch.size() >= n);
    for (std::size_t i = 0; i < n; ++i) {
      scratch[i] = (static_cast<std::uint64_t>(i) << 32) | queue[i];
    }
    std::sort(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(n),
              [meta](std::uint64_t a, std::uint64_t b) {
                const Address& pa = meta[static_cast<std::uint32_t>(a)].peer;
                const Address& pb = meta[static_cast<std::uint32_t>(b)].peer;
                if (pa == pb) return a < b;  // position is in the high bits
                return pa < pb;
              });
    for (std::size_t i = 0; i < n; ++i) queue[i] = static_cast<std::uint32_t>(scratch[i]);
  }
  std::size_t groups = 0;
  std::size_t i = 0;
  while (i < n) {
    const TxMeta& head = meta[queue[i]];
    SendGroup g{static_cast<std::uint32_t>(i), 1, head.len};
    std::uint32_t total = head.len;
    std::size_t j = i + 1;
    if (head.len > 0) {
      while (j < n && g.count < kGsoSegmentsMax) {
        const TxMeta& m = meta[queue[j]];
        if (!(m.peer == head.peer) || m.len == 0 || m.len > head.len) break;
        if (total + m.len > kGsoPayloadBytesMax) break;
        total += m.len;
        ++g.count;
        ++j;
        if (m.len < head.len) break;  // a shorter segment can only be the last
      }
    }
    out[groups++] = g;
    i = j;
  }
  return groups;
}

// ---- UdpTransportBase ----

UdpTransportBase::UdpTransportBase(const TransportConfig& config, UdpSocket socket)
    : config_(config), socket_(socket) {
  gso_active_ = socket_.gso;
}

UdpTransportBase::~UdpTransportBase() {
  if (socket_.fd >= 0) close(socket_.fd);
}

Status UdpTransportBase::init_pools(std::uint32_t rx_payload_offset) {
  // Receive: one frame per buffer the kernel can fill. A GRO frame holds a whole coalesced
  // burst; otherwise one datagram of datagram_bytes_max (a longer one is truncated: dropped).
  rx_count_ = socket_.gro ? config_.gro_recv_buffers : config_.recv_buffers;
  rx_payload_offset_ = rx_payload_offset;
  rx_payload_bytes_ = socket_.gro ? kGroPayloadBytes : config_.datagram_bytes_max;
  rx_frame_bytes_ = (rx_payload_offset + rx_payload_bytes_ + 63u) & ~63u;
  auto rx = MappedRegion::map(static_cast<std::size_t>(rx_count_) * rx_frame_bytes_);
  if (!rx) return rx.status();
  rx_region_ = std::move(rx.value());
  // Resident from the start: otherwise the kernel's first copy into each receive buffer takes a
  // page fault inside the receive path (8,192 of them for a first pass over 512 GRO buffers),
  // stalling the receiver just as traffic starts. Send buffers fault in on the sender's own
  // first write, outside any kernel path.
  if (Status s = rx_region_.populate(); !s) return s;
  rx_refs_.assign(rx_count_, 0);
  stage_.assign(rx_count_, Staged{});
  release_scratch_.reserve(rx_count_);
  poison(rx_region_.data(), rx_region_.size());

  // Send: send_buffers frames of datagram_bytes_max.
  tx_count_ = config_.send_buffers;
  auto tx = MappedRegion::map(static_cast<std::size_t>(tx_count_) * config_.datagram_bytes_max);
  if (!tx) return tx.status();
  tx_region_ = std::move(tx.value());
  tx_meta_.assign(tx_count_, TxMeta{});
  tx_state_.assign(tx_count_, kTxFree);
  tx_free_.clear();
  tx_free_.reserve(tx_count_);
  for (std::uint32_t i = tx_count_; i > 0; --i) tx_free_.push_back(i - 1);
  tx_queue_.reserve(tx_count_);
  plan_scratch_.assign(tx_count_, 0);
  plan_groups_.assign(tx_count_, SendGroup{});
  poison(tx_region_.data(), tx_region_.size());
  return Status::ok();
}

void UdpTransportBase::take_rx_frame(std::uint32_t frame) {
  RUMOR_ASSERT(frame < rx_count_);
  RUMOR_ASSERT(rx_refs_[frame] == 0);
  ++rx_frames_held_;
  unpoison(rx_frame(frame), rx_frame_bytes_);
}

void UdpTransportBase::give_rx_frame(std::uint32_t frame) {
  RUMOR_ASSERT(frame < rx_count_);
  RUMOR_ASSERT(rx_refs_[frame] == 0);
  RUMOR_ASSERT(rx_frames_held_ > 0);
  --rx_frames_held_;
  poison(rx_frame(frame), rx_frame_bytes_);
}

void UdpTransportBase::stage(std::uint32_t frame, std::uint32_t offset, std::uint32_t len,
                             std::uint32_t segment, const Address& peer) {
  RUMOR_ASSERT(frame < rx_count_);
  RUMOR_ASSERT(offset + len <= rx_frame_bytes_);
  // Staging holds one entry per frame at most, and there are rx_count_ frames.
  RUMOR_ASSERT(stage_tail_ - stage_head_ < rx_count_);
  rx_refs_[frame] = 1;  // the staging hold, dropped once every datagram in it is lent
  if (segment != 0 && len > segment) ++counters_.gro_receives;
  stage_[stage_tail_ & (rx_count_ - 1)] = Staged{frame, offset, len, segment, peer};
  ++stage_tail_;
}

void UdpTransportBase::note_kernel_drops(std::uint32_t cumulative) {
  const std::uint32_t delta = cumulative - kernel_drops_seen_;  // wraps correctly
  kernel_drops_seen_ = cumulative;
  count_drop(DropReason::kSocketOverflow, delta);
}

std::size_t UdpTransportBase::receive(std::span<Datagram> out) {
  if (out.empty()) return 0;
  reap(true);
  std::size_t n = 0;
  if (staging_empty()) return 0;
  // One clock read per batch: datagrams reaped together share a receive time.
  const std::uint64_t now = monotonic_ns();
  while (n < out.size() && !staging_empty()) {
    Staged& s = stage_[stage_head_ & (rx_count_ - 1)];
    const std::uint32_t len = (s.segment != 0 && s.len > s.segment) ? s.segment : s.len;
    Datagram& d = out[n++];
    d.data = rx_frame(s.frame) + s.offset;
    d.len = len;
    d.capacity = len;
    d.handle = s.frame;
    d.peer = s.peer;
    d.rx_time_ns = now;
    RUMOR_ASSERT(rx_refs_[s.frame] < UINT16_MAX);
    ++rx_refs_[s.frame];
    ++counters_.datagrams_received;
    counters_.bytes_received += len;
    s.offset += len;
    s.len -= len;
    if (s.len == 0) {
      --rx_refs_[s.frame];  // the staging hold; the datagram just lent keeps it above zero
      ++stage_head_;
    }
  }
  return n;
}

std::size_t UdpTransportBase::acquire(std::span<Datagram> out) {
  if (tx_free_.size() < out.size()) reap(false);
  const std::size_t n = std::min(out.size(), tx_free_.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t f = tx_free_.back();
    tx_free_.pop_back();
    RUMOR_ASSERT(tx_state_[f] == kTxFree);
    tx_state_[f] = kTxLent;
    unpoison(tx_frame(f), config_.datagram_bytes_max);
    Datagram& d = out[i];
    d.data = tx_frame(f);
    d.len = 0;
    d.capacity = config_.datagram_bytes_max;
    d.handle = f | kTxHandleBit;
    d.peer = Address();
    d.rx_time_ns = 0;
  }
  if (n < out.size()) ++counters_.tx_no_buffer;
  return n;
}

Status UdpTransportBase::send(std::span<const Datagram> batch) {
  Status first;
  for (const Datagram& d : batch) {
    RUMOR_ASSERT((d.handle & kTxHandleBit) != 0);  // a receive buffer handed to send()
    const std::uint32_t f = d.handle & ~kTxHandleBit;
    RUMOR_ASSERT(f < tx_count_);
    RUMOR_ASSERT(tx_state_[f] == kTxLent);
    RUMOR_ASSERT(d.data == tx_frame(f));
    Status refused;
    DropReason reason = DropReason::kOversized;
    Address peer = d.peer;
    if (d.len > config_.datagram_bytes_max) {
      refused = Status::error(Code::kTooLarge,
                              "datagram is " + std::to_string(d.len) +
                                  " bytes, datagram_bytes_max is " +
                                  std::to_string(config_.datagram_bytes_max));
    } else if (peer.empty()) {
      reason = DropReason::kBadAddress;
      refused = Status::error(Code::kInvalidArgument, "datagram has no destination address");
    } else if (socket_.local.is_ipv4() && peer.is_ipv6()) {
      reason = DropReason::kBadAddress;
      refused = Status::error(Code::kInvalidArgument, "cannot send to IPv6 " + peer.to_string() +
                                                          " from IPv4 socket " +
                                                          socket_.local.to_string());
    } else if (socket_.local.is_ipv6() && peer.is_ipv4()) {
      peer = peer.to_ipv6_mapped();
    }
    if (!refused.is_ok()) {
      count_drop(reason);
      tx_state_[f] = kTxFree;
      poison(tx_frame(f), config_.datagram_bytes_max);
      tx_free_.push_back(f);
      if (first.is_ok()) first = std::move(refused);
      continue;
    }
    tx_meta_[f] = TxMeta{peer, d.len};
    tx_state_[f] = kTxQueued;
    tx_queue_.push_back(f);
  }
  return first;
}

void UdpTransportBase::release(std::span<const Datagram> batch) {
  release_scratch_.clear();
  for (const Datagram& d : batch) {
    if ((d.handle & kTxHandleBit) != 0) {
      const std::uint32_t f = d.handle & ~kTxHandleBit;
      RUMOR_ASSERT(f < tx_count_);
      RUMOR_ASSERT(tx_state_[f] == kTxLent);  // queued buffers belong to the transport
      tx_state_[f] = kTxFree;
      poison(tx_frame(f), config_.datagram_bytes_max);
      tx_free_.push_back(f);
      continue;
    }
    const std::uint32_t f = d.handle;
    RUMOR_ASSERT(f < rx_count_);
    RUMOR_ASSERT(rx_refs_[f] > 0);  // released twice?
    if (--rx_refs_[f] == 0) release_scratch_.push_back(f);
  }
  if (release_scratch_.empty()) return;
  for (std::uint32_t f : release_scratch_) give_rx_frame(f);
  return_rx_frames(release_scratch_);
}

void UdpTransportBase::complete_tx(std::uint32_t frame, bool ok) {
  RUMOR_ASSERT(frame < tx_count_);
  RUMOR_ASSERT(tx_state_[frame] == kTxInFlight || tx_state_[frame] == kTxQueued);
  if (ok) {
    ++counters_.datagrams_sent;
    counters_.bytes_sent += tx_meta_[frame].len;
  }
  tx_state_[frame] = kTxFree;
  poison(tx_frame(frame), config_.datagram_bytes_max);
  tx_free_.push_back(frame);
}

}  // namespace rumor::io
