// XdpTransport: UDP over AF_XDP (docs/transport.md "AF_XDP"), one socket per interface queue.
//
// The UMEM is the buffer pool: receive and send frames are UMEM frames, lent to the caller
// without a copy, exactly as the io_uring backend lends its buffer ring. Receive frames wait in
// the fill ring; the kernel (or, with zero copy, the NIC) writes a whole Ethernet frame into
// one and posts it on the RX ring; receive() checks its headers and checksums
// (io/xdp_frame.h) and lends the UDP payload in place. Send frames keep kFrameHeadroomBytes in
// front of the payload: flush() writes the Ethernet/IP/UDP headers there, posts the frames on
// the TX ring and kicks the kernel once; frames come back through the completion ring.
//
// A small XDP program (io/bpf/rumor_xdp.bpf.c, embedded at build time) redirects UDP to our
// port into the socket and passes everything else (ARP, neighbour discovery, fragments, other
// ports) to the kernel. It is attached with a bpf_link, so it goes away with the process, even
// one that crashed: nothing stale keeps swallowing the port's traffic.
//
// Next hops: the kernel's routing and neighbour tables, read over rtnetlink and cached per
// destination (positive entries for 1 s, misses for 5 ms). A destination the table cannot
// serve yet (neighbour not resolved), one routed through another interface, a local address,
// or a datagram longer than the interface MTU allows, is sent through an ordinary UDP socket
// bound to the same address and port: the kernel resolves the neighbour as a side effect, and
// the next datagrams find it. That socket also receives what does not come through XDP
// (fragmented datagrams the kernel reassembled, loopback traffic such as the reactor's
// doorbell), into a few receive buffers of its own.
//
// Thread safety: one thread (see rumor/transport.h).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/udp_base.h"
#include "io/xdp_frame.h"
#include "rumor/transport.h"

namespace rumor::io {

// True when this build has AF_XDP support (libxdp, libbpf and a BPF compiler were found).
bool xdp_built();

class XdpTransport final : public Transport {
 public:
  // kUnavailable (with the reason) when AF_XDP cannot be had here: not built in, no privilege,
  // the kernel or the interface refuses the program or the socket. kInvalidArgument when the
  // configuration cannot work anywhere (no interface named, no such interface).
  static Result<std::unique_ptr<XdpTransport>> open(const TransportConfig& config);
  ~XdpTransport() override;

  Address local_address() const override { return local_; }
  TransportInfo info() const override;
  const TransportCounters& counters() const override { return counters_; }

  std::size_t receive(std::span<Datagram> out) override;
  std::size_t acquire(std::span<Datagram> out) override;
  Status send(std::span<const Datagram> batch) override;
  void release(std::span<const Datagram> batch) override;
  Status flush() override;
  Status poll(std::uint64_t timeout_ns, std::uint32_t wait_count) override;

  struct Impl;  // libxdp/libbpf state, kept out of this header

 private:
  explicit XdpTransport(const TransportConfig& config);

  TransportConfig config_;
  Address local_;
  TransportCounters counters_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rumor::io
