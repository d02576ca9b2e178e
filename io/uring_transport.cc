#include "io/uring_transport.h"

#include <netinet/udp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace rumor::io {
namespace {

// Layout of a receive buffer filled by multishot recvmsg: the kernel's header, then the name
// and control areas sized by recv_msg_, then the payload. 32 bytes of name (sockaddr_in6 is 28)
// keep the control area 8-byte aligned; control has room for UDP_GRO and SO_RXQ_OVFL.
constexpr std::uint32_t kRecvNameBytes = 32;
constexpr std::uint32_t kRecvControlBytes = 2 * CMSG_SPACE(sizeof(int));
constexpr std::uint32_t kRecvHeaderBytes =
    sizeof(io_uring_recvmsg_out) + kRecvNameBytes + kRecvControlBytes;
static_assert(kRecvHeaderBytes % 8 == 0, "payload and cmsgs stay aligned");

// user_data: the top two bits say what completed, the low 32 bits which frame or op.
constexpr std::uint64_t kTagShift = 62;
constexpr std::uint64_t kTagRecv = 1;
constexpr std::uint64_t kTagSingle = 2;
constexpr std::uint64_t kTagGso = 3;
constexpr std::uint64_t user_data(std::uint64_t tag, std::uint32_t index) {
  return (tag << kTagShift) | index;
}

// Consecutive receive errors (other than ENOBUFS) after which the receive is not re-armed, so a
// broken socket cannot spin the loop; poll() reports it.
constexpr int kRecvErrorsMax = 8;

std::uint32_t round_up_pow2(std::uint32_t v) {
  std::uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

UringTransport::UringTransport(const TransportConfig& config, UdpSocket socket)
    : UdpTransportBase(config, socket) {}

Result<std::unique_ptr<UringTransport>> UringTransport::open(const TransportConfig& config) {
  auto sock = open_udp_socket(config);
  if (!sock) return sock.status();
  std::unique_ptr<UringTransport> t(new UringTransport(config, *sock));
  if (Status s = t->init(); !s) return s;
  return t;
}

Status UringTransport::init() {
  if (Status s = init_pools(kRecvHeaderBytes); !s) return s;

  // SQ: one entry per send frame is the most a flush can prepare (plus the receive re-arm); a
  // larger backlog is submitted in several calls. CQ: every completion that can be outstanding
  // at once fits (a receive per ring buffer, a send per frame), so nothing overflows.
  const std::uint32_t sq_entries = std::min<std::uint32_t>(round_up_pow2(tx_count_ + 2), 4096);
  const std::uint32_t cq_entries =
      std::min<std::uint32_t>(round_up_pow2(rx_count_ + tx_count_ + 64), 65536);
  struct Attempt {
    unsigned flags;
    const char* names;
  };
  const Attempt attempts[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
           IORING_SETUP_SUBMIT_ALL,
       "single_issuer defer_taskrun"},
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED |
           IORING_SETUP_SUBMIT_ALL,
       "single_issuer coop_taskrun"},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop_taskrun"},
      {0, "plain"},
  };
  int err = 0;
  for (const Attempt& a : attempts) {
    io_uring_params p{};
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    err = io_uring_queue_init_params(sq_entries, &ring_, &p);
    if (err == 0) {
      ring_open_ = true;
      setup_flags_ = a.flags;
      features_ = a.names;
      break;
    }
    if (err != -EINVAL) break;  // not a flag problem: io_uring itself is unavailable
  }
  if (!ring_open_) {
    return Status::error(Code::kUnavailable,
                         "io_uring_setup failed: " + errno_text(-err) +
                             (err == -EPERM || err == -ENOSYS
                                  ? " (kernel without io_uring, or denied by seccomp/sysctl)"
                                  : ""));
  }

  // Multishot recvmsg arrived in Linux 6.0 together with SEND_ZC: the probe of one stands for
  // the other.
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
    const bool new_enough = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC) != 0;
    io_uring_free_probe(probe);
    if (!new_enough) {
      return Status::error(Code::kUnavailable,
                           "io_uring lacks multishot recvmsg (needs Linux 6.0 or later)");
    }
  }

  if (io_uring_register_files(&ring_, &socket_.fd, 1) == 0) {
    fixed_file_ = true;
    features_ += " fixed_file";
  }

  // The provided buffer ring: page-aligned memory the kernel reads buffer addresses from.
  auto region = MappedRegion::map(static_cast<std::size_t>(rx_count_) * sizeof(io_uring_buf));
  if (!region) return region.status();
  buf_ring_region_ = std::move(region.value());
  buf_ring_ = reinterpret_cast<io_uring_buf_ring*>(buf_ring_region_.data());
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(buf_ring_);
  reg.ring_entries = rx_count_;
  reg.bgid = 0;
  if (int r = io_uring_register_buf_ring(&ring_, &reg, 0); r != 0) {
    return Status::error(Code::kUnavailable, "io_uring provided buffer ring refused: " +
                                                 errno_text(-r) +
                                                 " (needs Linux 5.19 or later)");
  }
  io_uring_buf_ring_init(buf_ring_);
  const int mask = io_uring_buf_ring_mask(rx_count_);
  for (std::uint32_t f = 0; f < rx_count_; ++f) {
    io_uring_buf_ring_add(buf_ring_, rx_frame(f), rx_payload_offset_ + rx_payload_bytes_,
                          static_cast<unsigned short>(f), mask, static_cast<int>(f));
  }
  io_uring_buf_ring_advance(buf_ring_, static_cast<int>(rx_count_));
  features_ += " buf_ring multishot_recvmsg";

  recv_msg_.msg_namelen = kRecvNameBytes;
  recv_msg_.msg_controllen = kRecvControlBytes;

  gso_ops_.assign(std::max<std::uint32_t>(1, tx_count_ / 2), GsoOp{});
  gso_free_.reserve(gso_ops_.size());
  for (std::size_t i = gso_ops_.size(); i > 0; --i) {
    gso_free_.push_back(static_cast<std::uint32_t>(i - 1));
  }
  single_msgs_.assign(tx_count_, SingleMsg{});
  return Status::ok();
}

UringTransport::~UringTransport() {
  if (!ring_open_) return;
  // Cancel the multishot receive and wait (bounded) for its last completion, so the kernel is
  // done with the buffers before they are unmapped. Only the owning thread may submit; from
  // any other thread the ring's teardown cancels it instead.
  if (recv_armed_ && enabled_) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
      io_uring_prep_cancel64(sqe, user_data(kTagRecv, 0), 0);
      io_uring_sqe_set_data64(sqe, 0);
      if (io_uring_submit(&ring_) >= 0) {
        for (int i = 0; i < 100 && recv_armed_; ++i) {
          __kernel_timespec ts{0, 1'000'000};
          io_uring_cqe* cqe = nullptr;
          if (io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) != 0) continue;
          if ((cqe->user_data >> kTagShift) == kTagRecv && !(cqe->flags & IORING_CQE_F_MORE)) {
            recv_armed_ = false;
          }
          io_uring_cqe_seen(&ring_, cqe);
        }
      }
    }
  }
  io_uring_queue_exit(&ring_);
}

TransportInfo UringTransport::info() const {
  TransportInfo i;
  i.backend = "uring";
  i.gso = gso_active_;
  i.gro = socket_.gro;
  i.datagram_bytes_max = config_.datagram_bytes_max;
  i.socket_rcvbuf_bytes = socket_.rcvbuf_bytes;
  i.socket_sndbuf_bytes = socket_.sndbuf_bytes;
  i.features = features_;
  i.features += send_addr_ ? " send_addr" : " sendmsg";
  if (gso_active_) i.features += " udp_segment";
  if (socket_.gro) i.features += " udp_gro";
  return i;
}

void UringTransport::return_rx_frames(std::span<const std::uint32_t> frames) {
  const int mask = io_uring_buf_ring_mask(rx_count_);
  int offset = 0;
  for (std::uint32_t f : frames) {
    io_uring_buf_ring_add(buf_ring_, rx_frame(f), rx_payload_offset_ + rx_payload_bytes_,
                          static_cast<unsigned short>(f), mask, offset++);
  }
  // One release store publishes the whole batch to the kernel.
  io_uring_buf_ring_advance(buf_ring_, offset);
}

io_uring_sqe* UringTransport::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // The SQ is full: push what is there and go on. Rare: the SQ holds a whole send pool.
    if (io_uring_submit(&ring_) > 0 && sends_pending_ > 0) ++counters_.submits;
    sends_pending_ = 0;
    sqe = io_uring_get_sqe(&ring_);
  }
  RUMOR_ASSERT(sqe != nullptr);
  return sqe;
}

void UringTransport::queue_single(std::uint32_t f) {
  const TxMeta& m = tx_meta_[f];
  io_uring_sqe* sqe = next_sqe();
  const int fd = fixed_file_ ? 0 : socket_.fd;
  if (send_addr_) {
    io_uring_prep_send(sqe, fd, tx_frame(f), m.len, 0);
    io_uring_prep_send_set_addr(sqe, m.peer.sockaddr_ptr(),
                                static_cast<std::uint16_t>(m.peer.sockaddr_len()));
  } else {
    SingleMsg& s = single_msgs_[f];
    s.iov = iovec{tx_frame(f), m.len};
    s.msg = msghdr{};
    s.msg.msg_name = const_cast<sockaddr*>(m.peer.sockaddr_ptr());
    s.msg.msg_namelen = m.peer.sockaddr_len();
    s.msg.msg_iov = &s.iov;
    s.msg.msg_iovlen = 1;
    io_uring_prep_sendmsg(sqe, fd, &s.msg, 0);
  }
  if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, user_data(kTagSingle, f));
  tx_state_[f] = kTxInFlight;
  ++sends_pending_;
}

void UringTransport::queue_gso(std::span<const std::uint32_t> frames,
                               std::uint32_t segment_bytes) {
  if (gso_free_.empty()) {
    for (std::uint32_t f : frames) queue_single(f);
    return;
  }
  const std::uint32_t op_index = gso_free_.back();
  gso_free_.pop_back();
  GsoOp& op = gso_ops_[op_index];
  RUMOR_ASSERT(frames.size() >= 2 && frames.size() <= kGsoSegmentsMax);
  op.count = static_cast<std::uint32_t>(frames.size());
  for (std::uint32_t k = 0; k < op.count; ++k) {
    const std::uint32_t f = frames[k];
    op.frames[k] = f;
    op.iov[k] = iovec{tx_frame(f), tx_meta_[f].len};
    tx_state_[f] = kTxInFlight;
  }
  // The destination stays valid: it lives in the first frame's metadata until completion.
  const Address& peer = tx_meta_[frames[0]].peer;
  op.msg = msghdr{};
  op.msg.msg_name = const_cast<sockaddr*>(peer.sockaddr_ptr());
  op.msg.msg_namelen = peer.sockaddr_len();
  op.msg.msg_iov = op.iov;
  op.msg.msg_iovlen = op.count;
  std::memset(op.control, 0, sizeof(op.control));
  op.msg.msg_control = op.control;
  op.msg.msg_controllen = CMSG_SPACE(sizeof(std::uint16_t));
  cmsghdr* c = CMSG_FIRSTHDR(&op.msg);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
  const auto seg = static_cast<std::uint16_t>(segment_bytes);
  std::memcpy(CMSG_DATA(c), &seg, sizeof(seg));

  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_sendmsg(sqe, fixed_file_ ? 0 : socket_.fd, &op.msg, 0);
  if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, user_data(kTagGso, op_index));
  ++sends_pending_;
}

Status UringTransport::prepare() {
  if ((setup_flags_ & IORING_SETUP_R_DISABLED) != 0 && !enabled_) {
    // The calling thread becomes the ring's only submitter. liburing 2.3 declares
    // io_uring_enable_rings() but does not export it, so register directly.
    if (syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) !=
        0) {
      return errno_status("io_uring_register(ENABLE_RINGS)", errno);
    }
    enabled_ = true;
  }
  // Re-arm the receive once some buffers are back: arming on an empty ring would only end at
  // once with ENOBUFS again.
  const std::uint32_t in_ring = rx_count_ - rx_frames_held();
  const std::uint32_t rearm_min = std::max<std::uint32_t>(1, rx_count_ / 8);
  if (recv_wanted_ && !recv_armed_ && recv_errors_ < kRecvErrorsMax && in_ring >= rearm_min) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_recvmsg_multishot(sqe, fixed_file_ ? 0 : socket_.fd, &recv_msg_, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, user_data(kTagRecv, 0));
    recv_armed_ = true;
    ++counters_.rx_rearms;
  }
  if (!tx_queue_.empty()) {
    const std::size_t groups = plan_send_groups(tx_queue_, tx_meta_.data(), gso_active_,
                                                plan_scratch_, plan_groups_);
    for (std::size_t g = 0; g < groups; ++g) {
      const SendGroup& grp = plan_groups_[g];
      if (grp.count == 1) {
        queue_single(tx_queue_[grp.first]);
      } else {
        queue_gso(std::span<const std::uint32_t>(&tx_queue_[grp.first], grp.count),
                  grp.segment_bytes);
      }
    }
    tx_queue_.clear();
  }
  if (recv_errors_ >= kRecvErrorsMax) {
    return Status::error(Code::kIo, "io_uring receive keeps failing: " +
                                        errno_text(last_recv_error_));
  }
  return Status::ok();
}

Status UringTransport::flush() {
  Status s = prepare();
  if (io_uring_sq_ready(&ring_) == 0) return s;
  // With DEFER_TASKRUN the same call also runs pending receive work: still one system call.
  const int r = (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) != 0
                    ? io_uring_submit_and_get_events(&ring_)
                    : io_uring_submit(&ring_);
  if (sends_pending_ > 0) ++counters_.submits;
  sends_pending_ = 0;
  if (r < 0 && s.is_ok()) s = errno_status("io_uring_submit", -r);
  reap(false);  // completions posted by this call: counters and send buffers are current
  return s;
}

Status UringTransport::poll(std::uint64_t timeout_ns, std::uint32_t wait_count) {
  recv_wanted_ = true;
  Status s = prepare();
  if (wait_count == 0) wait_count = 1;
  const bool ready = !staging_empty() || io_uring_cq_ready(&ring_) >= wait_count;
  int r = 0;
  if (ready || timeout_ns == 0) {
    // Submit and collect what is there, without waiting.
    r = io_uring_submit_and_get_events(&ring_);
  } else {
    __kernel_timespec ts{static_cast<long long>(timeout_ns / 1'000'000'000u),
                         static_cast<long long>(timeout_ns % 1'000'000'000u)};
    io_uring_cqe* cqe = nullptr;
    r = io_uring_submit_and_wait_timeout(&ring_, &cqe, wait_count, &ts, nullptr);
    if (r == -ETIME || r == -EINTR) r = 0;
  }
  if (sends_pending_ > 0) ++counters_.submits;
  sends_pending_ = 0;
  if (r < 0 && s.is_ok()) s = errno_status("io_uring_enter", -r);
  reap(false);
  return s;
}

void UringTransport::reap(bool for_receive) {
  // One completion queue carries receives and sends alike; a receive() call means the caller
  // listens, so the next submit arms the receive.
  if (for_receive) recv_wanted_ = true;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_cqe* cqe = nullptr;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    const std::uint64_t tag = cqe->user_data >> kTagShift;
    const auto index = static_cast<std::uint32_t>(cqe->user_data);
    if (tag == kTagRecv) {
      on_recv(*cqe);
    } else if (tag == kTagSingle) {
      on_send_single(index, cqe->res);
    } else if (tag == kTagGso) {
      on_send_gso(index, cqe->res);
    }
    ++seen;
  }
  io_uring_cq_advance(&ring_, seen);
}

void UringTransport::on_recv(const io_uring_cqe& cqe) {
  if ((cqe.flags & IORING_CQE_F_MORE) == 0) recv_armed_ = false;
  if (cqe.res < 0) {
    if (cqe.res == -ENOBUFS) {
      ++counters_.rx_no_buffer;  // the caller holds every buffer: back-pressure, not an error
    } else {
      ++recv_errors_;
      last_recv_error_ = -cqe.res;
    }
    return;
  }
  recv_errors_ = 0;
  if ((cqe.flags & IORING_CQE_F_BUFFER) == 0) return;
  const std::uint32_t frame = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
  RUMOR_ASSERT(frame < rx_count_);
  take_rx_frame(frame);
  io_uring_recvmsg_out* out = io_uring_recvmsg_validate(rx_frame(frame), cqe.res, &recv_msg_);
  std::uint32_t segment = 0;
  if (out != nullptr) {
    for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(out, &recv_msg_); c != nullptr;
         c = io_uring_recvmsg_cmsg_nexthdr(out, &recv_msg_, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int v = 0;
        std::memcpy(&v, CMSG_DATA(c), sizeof(v));
        segment = v > 0 ? static_cast<std::uint32_t>(v) : 0;
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        std::uint32_t drops = 0;
        std::memcpy(&drops, CMSG_DATA(c), sizeof(drops));
        note_kernel_drops(drops);
      }
    }
  }
  if (out == nullptr || (out->flags & MSG_TRUNC) != 0) {
    // Longer than the buffer (or not even the header fit): never deliver half a datagram.
    count_drop(DropReason::kTruncated);
    give_rx_frame(frame);
    const std::uint32_t f[1] = {frame};
    return_rx_frames(f);
    return;
  }
  const std::uint32_t len = io_uring_recvmsg_payload_length(out, cqe.res, &recv_msg_);
  const auto* name = static_cast<const sockaddr*>(io_uring_recvmsg_name(out));
  const Address peer = Address::from_sockaddr(
      name, static_cast<socklen_t>(std::min(out->namelen, kRecvNameBytes)));
  stage(frame, kRecvHeaderBytes, len, segment, peer);
}

void UringTransport::on_send_single(std::uint32_t frame, int res) {
  if (res >= 0) {
    if (send_addr_) send_addr_proven_ = true;
    complete_tx(frame, true);
    return;
  }
  if (send_addr_ && !send_addr_proven_ &&
      (res == -EINVAL || res == -EDESTADDRREQ || res == -ENOTCONN)) {
    send_addr_ = false;  // a kernel without IORING_OP_SEND addresses: use SENDMSG from now on
  }
  if (res == -ENOBUFS) ++counters_.tx_no_buffer;
  count_drop(DropReason::kSendFailed);
  complete_tx(frame, false);
}

void UringTransport::on_send_gso(std::uint32_t op_index, int res) {
  RUMOR_ASSERT(op_index < gso_ops_.size());
  GsoOp& op = gso_ops_[op_index];
  const bool ok = res >= 0;
  if (ok) {
    ++counters_.gso_sends;
    counters_.gso_segments += op.count;
  } else {
    if (res == -EIO || res == -EINVAL || res == -EOPNOTSUPP) {
      gso_active_ = false;  // the path cannot segment; later batches go datagram by datagram
    }
    if (res == -ENOBUFS) ++counters_.tx_no_buffer;
    count_drop(DropReason::kSendFailed, op.count);
  }
  for (std::uint32_t k = 0; k < op.count; ++k) complete_tx(op.frames[k], ok);
  op.count = 0;
  gso_free_.push_back(op_index);
}

}  // namespace rumor::io
