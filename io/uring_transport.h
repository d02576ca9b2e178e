// UringTransport: UDP over io_uring, one ring per reactor (docs/transport.md).
//
// Receive: one multishot IORING_OP_RECVMSG over a provided buffer ring. The kernel picks a
// buffer per datagram and writes, into it, an io_uring_recvmsg_out header, the source address,
// control data (the UDP_GRO segment size, the SO_RXQ_OVFL drop counter) and the payload. The
// buffer is lent to the caller as it is (no copy) and goes back to the ring on release(). When the
// ring runs dry the kernel ends the multishot with ENOBUFS: that is back-pressure (counted), and
// the receive is re-armed on the next submit once buffers are back. Datagrams meanwhile wait in
// the socket's receive queue (sized up at open), and what overflows it is counted from
// SO_RXQ_OVFL.
//
// Send: queued by send(), turned into SQEs by flush()/poll() and submitted with one
// io_uring_enter per turn. A single datagram is an IORING_OP_SEND with a destination address (no
// msghdr to copy); a same-destination run is one IORING_OP_SENDMSG with a UDP_SEGMENT cmsg (GSO).
// Send buffers come back when their completions are reaped.
//
// Set-up uses what the kernel offers and degrades: SINGLE_ISSUER + DEFER_TASKRUN (completions are
// produced only when this thread enters the kernel, no IPIs), else COOP_TASKRUN; R_DISABLED so
// the ring binds to the thread that first polls, not the one that opened it; the socket as a
// registered file. SQPOLL is not used: it burns a core we do not have.
//
// Thread safety: one thread, the first to call flush()/poll().
#pragma once

#include <liburing.h>

#include <memory>
#include <string>
#include <vector>

#include "io/udp_base.h"

namespace rumor::io {

class UringTransport final : public UdpTransportBase {
 public:
  // Fails (kUnavailable, with the reason) when io_uring is missing, forbidden or too old.
  static Result<std::unique_ptr<UringTransport>> open(const TransportConfig& config);
  ~UringTransport() override;

  TransportInfo info() const override;
  Status flush() override;
  Status poll(std::uint64_t timeout_ns, std::uint32_t wait_count) override;

 private:
  UringTransport(const TransportConfig& config, UdpSocket socket);
  Status init();
  void reap(bool for_receive) override;
  void return_rx_frames(std::span<const std::uint32_t> frames) override;

  Status prepare();  // enable the ring on first use, re-arm the receive, queue sends as SQEs
  io_uring_sqe* next_sqe();
  void queue_single(std::uint32_t frame);
  void queue_gso(std::span<const std::uint32_t> frames, std::uint32_t segment_bytes);
  void on_recv(const io_uring_cqe& cqe);
  void on_send_single(std::uint32_t frame, int res);
  void on_send_gso(std::uint32_t op, int res);

  io_uring ring_{};
  bool ring_open_ = false;
  unsigned setup_flags_ = 0;
  bool enabled_ = false;
  bool fixed_file_ = false;
  bool send_addr_ = true;  // IORING_OP_SEND with a destination (Linux 6.0); else SENDMSG
  bool send_addr_proven_ = false;
  bool recv_armed_ = false;
  // Set by the first poll() or receive(): only then is the multishot receive armed. A socket
  // with an armed receive has a poll entry on its wait queue, and every datagram it sends walks
  // that queue from sock_wfree (the write-space wake-up): a transport that only sends and
  // flushes (a load generator, the pps benchmark's sender) would pay for listening it never does.
  bool recv_wanted_ = false;
  int recv_errors_ = 0;  // consecutive receive failures other than ENOBUFS
  int last_recv_error_ = 0;
  std::uint32_t sends_pending_ = 0;  // send SQEs prepared but not yet submitted
  std::string features_;

  MappedRegion buf_ring_region_;
  io_uring_buf_ring* buf_ring_ = nullptr;
  msghdr recv_msg_{};

  // A GSO send in flight: its msghdr, iovecs and cmsg must live until its completion.
  struct GsoOp {
    msghdr msg;
    iovec iov[kGsoSegmentsMax];
    std::uint32_t frames[kGsoSegmentsMax];
    std::uint32_t count;
    alignas(cmsghdr) unsigned char control[32];
  };
  std::vector<GsoOp> gso_ops_;
  std::vector<std::uint32_t> gso_free_;
  // The SENDMSG fallback for single datagrams, one per send frame.
  struct SingleMsg {
    msghdr msg;
    iovec iov;
  };
  std::vector<SingleMsg> single_msgs_;
};

}  // namespace rumor::io
