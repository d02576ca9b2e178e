#include "io/mmsg_transport.h"

#include <netinet/udp.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rumor::io {
namespace {
// recvmmsg reads at most this many datagrams per call; sendmmsg takes at most UIO_MAXIOV
// (1024) messages per call.
constexpr std::uint32_t kRecvBatchMax = 256;
constexpr std::uint32_t kSendMessagesMax = 1024;

// Reads the cmsgs every receive path understands: the GRO segment size and the kernel's
// cumulative drop counter.
void parse_control(msghdr* msg, std::uint32_t* segment, std::uint32_t* drops, bool* has_drops) {
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int v = 0;
      std::memcpy(&v, CMSG_DATA(c), sizeof(v));
      *segment = v > 0 ? static_cast<std::uint32_t>(v) : 0;
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
      std::memcpy(drops, CMSG_DATA(c), sizeof(*drops));
      *has_drops = true;
    }
  }
}
}  // namespace

MmsgTransport::MmsgTransport(const TransportConfig& config, UdpSocket socket)
    : UdpTransportBase(config, socket) {}

Result<std::unique_ptr<MmsgTransport>> MmsgTransport::open(const TransportConfig& config) {
  auto sock = open_udp_socket(config);
  if (!sock) return sock.status();
  std::unique_ptr<MmsgTransport> t(new MmsgTransport(config, *sock));
  if (Status s = t->init(); !s) return s;
  return t;
}

Status MmsgTransport::init() {
  if (Status s = init_pools(0); !s) return s;
  rx_free_.reserve(rx_count_);
  for (std::uint32_t i = rx_count_; i > 0; --i) rx_free_.push_back(i - 1);
  const std::uint32_t slots = std::min(rx_count_, kRecvBatchMax);
  recv_slots_.assign(slots, RecvSlot{});
  recv_hdrs_.assign(slots, mmsghdr{});
  send_hdrs_.assign(tx_count_, mmsghdr{});
  send_iovs_.assign(tx_count_, iovec{});
  send_cmsgs_.assign(tx_count_, SendCmsg{});
  return Status::ok();
}

TransportInfo MmsgTransport::info() const {
  TransportInfo i;
  i.backend = "mmsg";
  i.gso = gso_active_;
  i.gro = socket_.gro;
  i.datagram_bytes_max = config_.datagram_bytes_max;
  i.socket_rcvbuf_bytes = socket_.rcvbuf_bytes;
  i.socket_sndbuf_bytes = socket_.sndbuf_bytes;
  i.features = "sendmmsg recvmmsg";
  if (gso_active_) i.features += " udp_segment";
  if (socket_.gro) i.features += " udp_gro";
  return i;
}

void MmsgTransport::return_rx_frames(std::span<const std::uint32_t> frames) {
  for (std::uint32_t f : frames) rx_free_.push_back(f);
}

void MmsgTransport::arm_recv_slot(std::size_t slot, std::uint32_t frame) {
  RecvSlot& s = recv_slots_[slot];
  s.frame = frame;
  s.iov = iovec{rx_frame(frame), rx_payload_bytes_};
  msghdr& m = recv_hdrs_[slot].msg_hdr;
  m.msg_name = &s.name;
  m.msg_namelen = sizeof(s.name);
  m.msg_iov = &s.iov;
  m.msg_iovlen = 1;
  m.msg_control = s.control;
  m.msg_controllen = sizeof(s.control);
  m.msg_flags = 0;
  recv_hdrs_[slot].msg_len = 0;
}

void MmsgTransport::reap(bool for_receive) {
  // Sends complete inside sendmmsg; only receives need reaping, and only when asked for and
  // nothing staged is still waiting to be lent.
  if (!for_receive || !staging_empty()) return;
  while (recv_armed_ < recv_slots_.size() && !rx_free_.empty()) {
    arm_recv_slot(recv_armed_++, rx_free_.back());
    rx_free_.pop_back();
  }
  const std::size_t k = recv_armed_;
  if (k == 0) {
    ++counters_.rx_no_buffer;  // the caller holds every receive buffer
    return;
  }
  // Armed frames stay poisoned, but ASan's recvmmsg interceptor checks the ranges the kernel
  // may write: open them for the call, and close the ones left unused again after it.
  if (poisoning()) {
    for (std::size_t i = 0; i < k; ++i) unpoison(rx_frame(recv_slots_[i].frame), rx_payload_bytes_);
  }
  const int r = recvmmsg(socket_.fd, recv_hdrs_.data(), static_cast<unsigned>(k), MSG_DONTWAIT,
                         nullptr);
  rx_maybe_more_ = r == static_cast<int>(k);
  const std::size_t filled = r > 0 ? static_cast<std::size_t>(r) : 0;
  if (poisoning()) {
    for (std::size_t i = filled; i < k; ++i) {
      poison(rx_frame(recv_slots_[i].frame), rx_payload_bytes_);
    }
  }
  if (filled == 0) return;  // EAGAIN: nothing waiting; other errors leave the socket as it was
  for (std::size_t i = 0; i < filled; ++i) {
    RecvSlot& s = recv_slots_[i];
    take_rx_frame(s.frame);
    msghdr& m = recv_hdrs_[i].msg_hdr;
    std::uint32_t segment = 0;
    std::uint32_t drops = 0;
    bool has_drops = false;
    parse_control(&m, &segment, &drops, &has_drops);
    if (has_drops) note_kernel_drops(drops);
    if ((m.msg_flags & MSG_TRUNC) != 0) {
      count_drop(DropReason::kTruncated);
      give_rx_frame(s.frame);
      rx_free_.push_back(s.frame);
      continue;
    }
    const Address peer =
        Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&s.name), m.msg_namelen);
    stage(s.frame, 0, recv_hdrs_[i].msg_len, segment, peer);
  }
  // Re-arm the filled slots [0, filled): with free frames, or with the armed slots from the end
  // so the armed ones stay contiguous from slot 0.
  for (std::size_t i = 0; i < filled; ++i) {
    if (!rx_free_.empty()) {
      arm_recv_slot(i, rx_free_.back());
      rx_free_.pop_back();
    } else if (recv_armed_ > filled) {
      arm_recv_slot(i, recv_slots_[--recv_armed_].frame);
    } else {
      recv_armed_ = i;  // no frame for slots [i, filled): they stay empty
      break;
    }
  }
  // Every frame is in exactly one place: an armed slot, the free stack, or staging/the caller.
  RUMOR_ASSERT(recv_armed_ + rx_free_.size() + rx_frames_held() == rx_count_);
}

Status MmsgTransport::flush() {
  if (tx_queue_.empty()) return Status::ok();
  const std::size_t n = tx_queue_.size();
  const std::size_t groups = plan_send_groups(tx_queue_, tx_meta_.data(), gso_active_,
                                              plan_scratch_, plan_groups_);
  for (std::size_t g = 0; g < groups; ++g) {
    const SendGroup& grp = plan_groups_[g];
    for (std::uint32_t k = 0; k < grp.count; ++k) {
      const std::uint32_t f = tx_queue_[grp.first + k];
      tx_state_[f] = kTxInFlight;
      send_iovs_[grp.first + k] = iovec{tx_frame(f), tx_meta_[f].len};
    }
    const TxMeta& head = tx_meta_[tx_queue_[grp.first]];
    msghdr& m = send_hdrs_[g].msg_hdr;
    m = msghdr{};
    m.msg_name = const_cast<sockaddr*>(head.peer.sockaddr_ptr());
    m.msg_namelen = head.peer.sockaddr_len();
    m.msg_iov = &send_iovs_[grp.first];
    m.msg_iovlen = grp.count;
    if (grp.count > 1) {
      unsigned char* control = send_cmsgs_[g].control;
      std::memset(control, 0, sizeof(send_cmsgs_[g].control));
      m.msg_control = control;
      m.msg_controllen = CMSG_SPACE(sizeof(std::uint16_t));
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      const auto seg = static_cast<std::uint16_t>(grp.segment_bytes);
      std::memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    }
  }

  auto finish_group = [&](std::size_t g, bool ok) {
    const SendGroup& grp = plan_groups_[g];
    if (ok && grp.count > 1) {
      ++counters_.gso_sends;
      counters_.gso_segments += grp.count;
    }
    if (!ok) count_drop(DropReason::kSendFailed, grp.count);
    for (std::uint32_t k = 0; k < grp.count; ++k) complete_tx(tx_queue_[grp.first + k], ok);
  };

  Status result;
  std::size_t next = 0;
  std::size_t interrupts = 0;
  // Bounded: every pass either sends at least one group, drops one, or stops.
  while (next < groups) {
    const std::size_t chunk = std::min<std::size_t>(groups - next, kSendMessagesMax);
    const int r = sendmmsg(socket_.fd, &send_hdrs_[next], static_cast<unsigned>(chunk),
                           MSG_DONTWAIT);
    ++counters_.submits;
    if (r > 0) {
      for (int k = 0; k < r; ++k) finish_group(next + static_cast<std::size_t>(k), true);
      next += static_cast<std::size_t>(r);
      continue;
    }
    const int err = errno;
    if (err == EINTR && ++interrupts < 4) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) break;  // socket buffer full: keep the rest queued
    const SendGroup& grp = plan_groups_[next];
    if (err == ENOBUFS) ++counters_.tx_no_buffer;
    if (grp.count > 1 && (err == EIO || err == EINVAL || err == EOPNOTSUPP)) {
      gso_active_ = false;  // the path cannot segment; later batches go datagram by datagram
    }
    // A datagram the kernel refuses (unreachable, EMSGSIZE, ...) is counted, as on io_uring
    // where it only shows in its completion; flush() fails only when it cannot submit at all.
    if ((err == EBADF || err == ENOTSOCK || err == EFAULT) && result.is_ok()) {
      result = errno_status("sendmmsg", err);
    }
    finish_group(next, false);
    ++next;
  }
  // What was not sent stays queued, in planned order (per-destination order is kept).
  std::size_t kept = 0;
  for (std::size_t g = next; g < groups; ++g) {
    const SendGroup& grp = plan_groups_[g];
    for (std::uint32_t k = 0; k < grp.count; ++k) {
      const std::uint32_t f = tx_queue_[grp.first + k];
      tx_state_[f] = kTxQueued;
      tx_queue_[kept++] = f;
    }
  }
  RUMOR_ASSERT(kept <= n);
  tx_queue_.resize(kept);
  return result;
}

Status MmsgTransport::poll(std::uint64_t timeout_ns, std::uint32_t wait_count) {
  (void)wait_count;  // poll(2) wakes at the first datagram; recvmmsg then takes what is there
  Status s = flush();
  // No need to wait (a system call) when datagrams are staged or surely waiting.
  if (!staging_empty() || rx_maybe_more_ || timeout_ns == 0) return s;
  pollfd p{socket_.fd, static_cast<short>(POLLIN | (tx_queue_.empty() ? 0 : POLLOUT)), 0};
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000u),
              static_cast<long>(timeout_ns % 1'000'000'000u)};
  if (ppoll(&p, 1, &ts, nullptr) < 0 && errno != EINTR && s.is_ok()) {
    s = errno_status("ppoll", errno);
  }
  return s;
}

}  // namespace rumor::io
