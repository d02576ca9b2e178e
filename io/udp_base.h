// What the two kernel-socket backends (io_uring, sendmmsg) share: the UDP socket set-up, the
// buffer pools allocated up front, the GSO send planner, and the receive staging that splits
// GRO-coalesced receives back into datagrams. Backends add only their kernel interaction:
// how receives are reaped into staging, how freed receive buffers go back, how sends are issued.
//
// Buffer handles (Datagram::handle): bit 31 set = send frame, else receive frame; the low bits
// are the frame index. Several datagrams can share one receive frame (a GRO burst): the frame
// carries a reference count and goes back to the kernel when the last one is released.
//
// Thread safety: one thread (see rumor/transport.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/assert.h"
#include "rumor/transport.h"

namespace rumor::io {

inline constexpr std::uint32_t kTxHandleBit = 0x8000'0000u;
// A GRO receive buffer holds the largest UDP payload the kernel can coalesce into one skb.
inline constexpr std::uint32_t kGroPayloadBytes = 65535;
// Largest total payload of one GSO super-datagram: 65535 - 8 UDP - 40 IPv6 (also fits IPv4).
inline constexpr std::uint32_t kGsoPayloadBytesMax = 65535 - 8 - 40;

// ---- AddressSanitizer: memory the kernel owns is poisoned while it owns it, so user code
// touching a buffer after handing it back is caught. The kernel's own writes are invisible to
// ASan and never trip it; unpoisoning on the way back out makes the bytes readable again.
void poison(const void* p, std::size_t n);
void unpoison(const void* p, std::size_t n);
// True in an ASan build (poison/unpoison do something): loops that only poison can be skipped.
bool poisoning();

// An anonymous, page-aligned mapping (buffer rings must be page-aligned; pools are big and want
// to stay out of the heap). Move-only.
class MappedRegion {
 public:
  MappedRegion() = default;
  static Result<MappedRegion> map(std::size_t bytes);
  // Makes every page resident and writable now (MADV_POPULATE_WRITE), so the kernel's first
  // copy into a receive buffer takes no page fault in the receive path. An error if the memory
  // cannot be had (ENOMEM under a cgroup limit); a no-op on kernels before 5.14.
  Status populate();
  MappedRegion(MappedRegion&& o) noexcept;
  MappedRegion& operator=(MappedRegion&& o) noexcept;
  ~MappedRegion();
  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Checks a TransportConfig before anything is opened; messages name the field.
Status validate_config(const TransportConfig& config);

struct UdpSocket {
  int fd = -1;
  Address local;
  std::uint32_t rcvbuf_bytes = 0;
  std::uint32_t sndbuf_bytes = 0;
  bool gso = false;  // UDP_SEGMENT accepted by this kernel
  bool gro = false;  // UDP_GRO enabled
};
// socket + SO_REUSEPORT + buffer sizing + SO_RXQ_OVFL + UDP_GRO + bind. Non-blocking.
Result<UdpSocket> open_udp_socket(const TransportConfig& config);

// "Operation not permitted": the text of an errno, thread-safe (strerror is not).
std::string errno_text(int err);
Status errno_status(std::string_view what, int err);

// ---- Send planning (GSO) ----

struct TxMeta {
  Address peer;  // as the socket needs it (IPv4 peers mapped for IPv6 sockets)
  std::uint32_t len = 0;
};

// One system-level send: `count` frames starting at queue[first], all to one peer. count > 1
// means a UDP_SEGMENT super-datagram of segment_bytes-sized segments (the last may be shorter).
struct SendGroup {
  std::uint32_t first = 0;
  std::uint32_t count = 0;
  std::uint32_t segment_bytes = 0;
};

// Reorders `queue` (frame indices) so each destination's datagrams are adjacent, keeping their
// order per destination, then cuts GSO groups: same peer, equal sizes, a shorter one may close a
// group, at most kGsoSegmentsMax and kGsoPayloadBytesMax. Zero-length datagrams travel alone.
// `scratch` must be as long as `queue`. Returns the number of groups written to `out` (which is
// as long as `queue`). With gso false every datagram is its own group and nothing moves.
std::size_t plan_send_groups(std::span<std::uint32_t> queue, const TxMeta* meta, bool gso,
                             std::span<std::uint64_t> scratch, std::span<SendGroup> out);

// ---- The shared base ----

class UdpTransportBase : public Transport {
 public:
  ~UdpTransportBase() override;

  Address local_address() const override { return socket_.local; }
  const TransportCounters& counters() const override { return counters_; }
  int socket_fd() const { return socket_.fd; }

  std::size_t receive(std::span<Datagram> out) override;
  std::size_t acquire(std::span<Datagram> out) override;
  Status send(std::span<const Datagram> batch) override;
  void release(std::span<const Datagram> batch) override;

 protected:
  UdpTransportBase(const TransportConfig& config, UdpSocket socket);
  // rx_payload_offset: where payload starts in a receive frame (io_uring puts its
  // io_uring_recvmsg_out header, name and control data first).
  Status init_pools(std::uint32_t rx_payload_offset);

  // Backend hooks.
  // Moves whatever the kernel has completed into staging and frees completed send frames.
  // `for_receive` is true when called from receive() (mmsg issues recvmmsg only then).
  virtual void reap(bool for_receive) = 0;
  // Receive frames whose last datagram was released, to be handed back to the kernel.
  virtual void return_rx_frames(std::span<const std::uint32_t> frames) = 0;

  // Staging: a reaped receive waiting to be lent out (possibly a GRO burst to split).
  struct Staged {
    std::uint32_t frame = 0;
    std::uint32_t offset = 0;   // payload start within the frame
    std::uint32_t len = 0;      // payload bytes remaining
    std::uint32_t segment = 0;  // GRO segment size; 0 = one datagram
    Address peer;
  };
  // Called by backends while reaping; the frame's reference is taken here.
  void stage(std::uint32_t frame, std::uint32_t offset, std::uint32_t len, std::uint32_t segment,
             const Address& peer);
  bool staging_empty() const { return stage_head_ == stage_tail_; }
  std::uint32_t rx_frames_held() const { return rx_frames_held_; }  // by caller or staging
  void note_kernel_drops(std::uint32_t cumulative);  // SO_RXQ_OVFL value
  std::byte* rx_frame(std::uint32_t i) const {
    return rx_region_.data() + static_cast<std::size_t>(i) * rx_frame_bytes_;
  }
  std::byte* tx_frame(std::uint32_t i) const {
    return tx_region_.data() + static_cast<std::size_t>(i) * config_.datagram_bytes_max;
  }
  // Marks a receive frame as taken from the kernel (ASan unpoison, hold count) and back.
  void take_rx_frame(std::uint32_t frame);
  void give_rx_frame(std::uint32_t frame);  // for frames dropped before staging

  // Send side: queued frames, their metadata, and completion.
  void complete_tx(std::uint32_t frame, bool ok);
  void count_drop(DropReason r, std::uint64_t n = 1) {
    counters_.drops[static_cast<std::size_t>(r)] += n;
  }

  TransportConfig config_;
  UdpSocket socket_;
  TransportCounters counters_;
  bool gso_active_ = false;

  std::uint32_t rx_count_ = 0;
  std::uint32_t rx_frame_bytes_ = 0;
  std::uint32_t rx_payload_offset_ = 0;
  std::uint32_t rx_payload_bytes_ = 0;
  MappedRegion rx_region_;
  std::vector<std::uint16_t> rx_refs_;  // datagrams lent from each frame, + 1 while staged

  std::uint32_t tx_count_ = 0;
  MappedRegion tx_region_;
  std::vector<TxMeta> tx_meta_;
  std::vector<std::uint8_t> tx_state_;
  std::vector<std::uint32_t> tx_free_;   // stack
  std::vector<std::uint32_t> tx_queue_;  // queued by send(), in order
  std::vector<std::uint64_t> plan_scratch_;
  std::vector<SendGroup> plan_groups_;

 private:
  std::vector<Staged> stage_;  // ring, capacity rx_count_ (one entry per frame at most)
  std::uint64_t stage_head_ = 0;
  std::uint64_t stage_tail_ = 0;
  std::uint32_t rx_frames_held_ = 0;
  std::uint32_t kernel_drops_seen_ = 0;
  std::vector<std::uint32_t> release_scratch_;
};

enum TxState : std::uint8_t { kTxFree = 0, kTxLent, kTxQueued, kTxInFlight };

}  // namespace rumor::io
