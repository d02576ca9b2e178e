// MmsgTransport: UDP with sendmmsg/recvmmsg. The portable backend: it runs wherever io_uring is
// missing or forbidden (container seccomp profiles often deny io_uring_setup), and it is the
// baseline io_uring is measured against. Same buffer pools, GSO planning and GRO splitting as
// the io_uring backend (io/udp_base.h); sends are issued by flush() as one sendmmsg per
// kUioMaxMessages, receives by receive() as one recvmmsg.
//
// Thread safety: one thread.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <vector>

#include "io/udp_base.h"

namespace rumor::io {

class MmsgTransport final : public UdpTransportBase {
 public:
  static Result<std::unique_ptr<MmsgTransport>> open(const TransportConfig& config);

  TransportInfo info() const override;
  Status flush() override;
  Status poll(std::uint64_t timeout_ns, std::uint32_t wait_count) override;

 private:
  MmsgTransport(const TransportConfig& config, UdpSocket socket);
  Status init();
  void reap(bool for_receive) override;
  void return_rx_frames(std::span<const std::uint32_t> frames) override;

  // Receive: one slot per message of a recvmmsg call. Slots [0, recv_armed_) hold a frame and
  // a header ready for the kernel, and stay armed between calls: recvmmsg fills from slot 0, so
  // after a call only the slots it filled are armed again (preparing every slot for every call
  // took a third of the receiver's time when calls return a few datagrams each).
  struct RecvSlot {
    sockaddr_in6 name;
    alignas(cmsghdr) unsigned char control[64];
    iovec iov;
    std::uint32_t frame;
  };
  void arm_recv_slot(std::size_t slot, std::uint32_t frame);
  std::vector<std::uint32_t> rx_free_;  // frames neither the caller nor a slot holds
  bool rx_maybe_more_ = false;  // the last recvmmsg filled every slot: more is likely waiting
  std::vector<RecvSlot> recv_slots_;
  std::vector<mmsghdr> recv_hdrs_;
  std::size_t recv_armed_ = 0;

  // Send: one header per group, iovecs laid out like the planned queue.
  struct SendCmsg {
    alignas(cmsghdr) unsigned char control[32];
  };
  std::vector<mmsghdr> send_hdrs_;
  std::vector<iovec> send_iovs_;
  std::vector<SendCmsg> send_cmsgs_;
};

}  // namespace rumor::io
