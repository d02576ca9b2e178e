#include "io/xdp_transport.h"

#ifdef RUMOR_HAVE_XDP

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <linux/if_xdp.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "base/clock.h"

// The XDP program, compiled with clang -target bpf at build time (io/CMakeLists.txt).
extern "C" const unsigned char rumor_xdp_object[];
extern "C" const unsigned long rumor_xdp_object_size;

namespace rumor::io {

bool xdp_built() { return true; }

namespace {

// Frames the kernel socket receives into (fragmented datagrams, loopback, doorbells): few, they
// are not the fast path.
constexpr std::uint32_t kSlowRxBuffers = 32;
constexpr std::uint32_t kSlowHandleBit = 0x4000'0000u;
static_assert((kSlowHandleBit & kTxHandleBit) == 0);
// Next-hop cache: how long an answer from the kernel's tables is trusted, and its size bound.
constexpr std::uint64_t kHopTtlNs = 1'000'000'000;
constexpr std::uint64_t kHopMissTtlNs = 5'000'000;
constexpr std::size_t kHopsMax = 4096;
// How often (in poll() calls) the socket's XDP_STATISTICS are read for the drop counters.
constexpr std::uint32_t kStatsEveryPolls = 64;
// One kick of a copy-mode socket sends at most 32 frames (the kernel's TX_BATCH_SIZE).
constexpr std::uint32_t kKickBatch = 32;

std::uint32_t next_pow2(std::uint32_t v) {
  std::uint32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

Status unavailable(std::string what) {
  return Status::error(Code::kUnavailable, "AF_XDP: " + std::move(what));
}
Status unavailable_errno(const std::string& what, int err) {
  return unavailable(what + ": " + errno_text(err) + " (errno " + std::to_string(err) + ")");
}

// The address bytes of an Address, port and scope dropped: the next-hop cache key. Fixed size,
// so looking up a destination per datagram allocates nothing.
struct IpKey {
  std::uint8_t len = 0;  // 4 or 16
  std::array<std::uint8_t, 16> bytes{};
  bool operator==(const IpKey& o) const = default;
  std::string_view view() const { return {reinterpret_cast<const char*>(bytes.data()), len}; }
};
struct IpKeyHash {
  std::size_t operator()(const IpKey& k) const noexcept {
    return std::hash<std::string_view>{}(k.view());
  }
};

IpKey ip_key(const Address& a) {
  IpKey k;
  if (a.is_ipv4()) {
    k.len = 4;
    std::memcpy(k.bytes.data(), &reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr())->sin_addr,
                4);
  } else {
    k.len = 16;
    std::memcpy(k.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr())->sin6_addr,
                16);
  }
  return k;
}

bool same_ip(const Address& a, const Address& b) {
  return a.family() == b.family() && ip_key(a) == ip_key(b);
}

// ---- rtnetlink: the route and the neighbour of a destination ----

struct Hop {
  bool xdp = false;  // reachable on our interface with a known MAC
  MacAddress mac{};
  std::uint64_t expires_ns = 0;
};

class NextHops {
 public:
  NextHops() = default;
  NextHops(const NextHops&) = delete;
  NextHops& operator=(const NextHops&) = delete;
  ~NextHops() {
    if (fd_ >= 0) close(fd_);
  }

  Status open(int ifindex) {
    ifindex_ = ifindex;
    fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) return unavailable_errno("netlink socket", errno);
    // Bounded: a lookup never waits more than 100 ms for the kernel's answer.
    timeval tv{0, 100'000};
    (void)setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      return unavailable_errno("netlink bind", errno);
    }
    return Status::ok();
  }

  const Hop& lookup(const Address& dst, std::uint64_t now) {
    const IpKey key = ip_key(dst);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.expires_ns > now) return it->second;
    if (cache_.size() >= kHopsMax) cache_.clear();
    Hop h = resolve(dst);
    h.expires_ns = now + (h.xdp ? kHopTtlNs : kHopMissTtlNs);
    ++lookups_;
    return cache_[key] = h;
  }
  std::uint64_t lookups() const { return lookups_; }

 private:
  // One request, one answer: writes the answer's payload (after nlmsghdr) into buf.
  // Returns the message type (RTM_NEW*), 0 on an error answer or no answer.
  int request(void* req, std::size_t len, std::vector<unsigned char>* buf) {
    auto* h = static_cast<nlmsghdr*>(req);
    h->nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd_, req, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
      return 0;
    }
    buf->resize(8192);
    for (int i = 0; i < 4; ++i) {  // skip stale answers to an earlier, timed-out request
      const ssize_t n = recv(fd_, buf->data(), buf->size(), 0);
      if (n < static_cast<ssize_t>(sizeof(nlmsghdr))) return 0;
      const auto* r = reinterpret_cast<const nlmsghdr*>(buf->data());
      if (!NLMSG_OK(r, static_cast<unsigned>(n)) || r->nlmsg_seq != seq_) continue;
      if (r->nlmsg_type == NLMSG_ERROR) return 0;
      const int type = r->nlmsg_type;  // read before the move below overwrites the header
      const std::size_t body = r->nlmsg_len - NLMSG_HDRLEN;
      std::memmove(buf->data(), NLMSG_DATA(r), body);
      buf->resize(body);
      return type;
    }
    return 0;
  }

  Hop resolve(const Address& dst) {
    Hop hop;
    const bool v4 = dst.is_ipv4();
    const std::string ip(ip_key(dst).view());  // a miss: allocating here is fine
    std::vector<unsigned char> buf;
    // The route: which interface, and through which gateway.
    struct {
      nlmsghdr h;
      rtmsg r;
      unsigned char attrs[64];
    } rq{};
    rq.h.nlmsg_type = RTM_GETROUTE;
    rq.h.nlmsg_flags = NLM_F_REQUEST;
    rq.r.rtm_family = static_cast<unsigned char>(v4 ? AF_INET : AF_INET6);
    rq.r.rtm_dst_len = static_cast<unsigned char>(ip.size() * 8);
    auto* a = reinterpret_cast<rtattr*>(rq.attrs);
    a->rta_type = RTA_DST;
    a->rta_len = static_cast<unsigned short>(RTA_LENGTH(ip.size()));
    std::memcpy(RTA_DATA(a), ip.data(), ip.size());
    rq.h.nlmsg_len =
        static_cast<std::uint32_t>(NLMSG_LENGTH(sizeof(rtmsg)) + RTA_ALIGN(a->rta_len));
    if (request(&rq, rq.h.nlmsg_len, &buf) != RTM_NEWROUTE || buf.size() < sizeof(rtmsg)) {
      return hop;
    }
    const auto* rt = reinterpret_cast<const rtmsg*>(buf.data());
    if (rt->rtm_type != RTN_UNICAST) return hop;  // local, broadcast, unreachable: the kernel's
    int oif = 0;
    std::string next = ip;
    int attr_len = static_cast<int>(buf.size() - NLMSG_ALIGN(sizeof(rtmsg)));
    for (auto* ra = reinterpret_cast<rtattr*>(buf.data() + NLMSG_ALIGN(sizeof(rtmsg)));
         RTA_OK(ra, attr_len); ra = RTA_NEXT(ra, attr_len)) {
      if (ra->rta_type == RTA_OIF && RTA_PAYLOAD(ra) >= 4) {
        std::memcpy(&oif, RTA_DATA(ra), 4);
      } else if (ra->rta_type == RTA_GATEWAY && RTA_PAYLOAD(ra) == ip.size()) {
        next.assign(static_cast<const char*>(RTA_DATA(ra)), ip.size());
      }
    }
    if (oif != ifindex_) return hop;
    // The neighbour: the next hop's MAC, if the kernel has resolved it.
    struct {
      nlmsghdr h;
      ndmsg n;
      unsigned char attrs[64];
    } nq{};
    nq.h.nlmsg_type = RTM_GETNEIGH;
    nq.h.nlmsg_flags = NLM_F_REQUEST;
    nq.n.ndm_family = static_cast<unsigned char>(v4 ? AF_INET : AF_INET6);
    nq.n.ndm_ifindex = ifindex_;
    auto* na = reinterpret_cast<rtattr*>(nq.attrs);
    na->rta_type = NDA_DST;
    na->rta_len = static_cast<unsigned short>(RTA_LENGTH(next.size()));
    std::memcpy(RTA_DATA(na), next.data(), next.size());
    nq.h.nlmsg_len =
        static_cast<std::uint32_t>(NLMSG_LENGTH(sizeof(ndmsg)) + RTA_ALIGN(na->rta_len));
    if (request(&nq, nq.h.nlmsg_len, &buf) != RTM_NEWNEIGH || buf.size() < sizeof(ndmsg)) {
      return hop;
    }
    const auto* nd = reinterpret_cast<const ndmsg*>(buf.data());
    constexpr unsigned kUsable =
        NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
    if ((nd->ndm_state & kUsable) == 0) return hop;
    attr_len = static_cast<int>(buf.size() - NLMSG_ALIGN(sizeof(ndmsg)));
    for (auto* ra = reinterpret_cast<rtattr*>(buf.data() + NLMSG_ALIGN(sizeof(ndmsg)));
         RTA_OK(ra, attr_len); ra = RTA_NEXT(ra, attr_len)) {
      if (ra->rta_type == NDA_LLADDR && RTA_PAYLOAD(ra) == 6) {
        std::memcpy(hop.mac.data(), RTA_DATA(ra), 6);
        hop.xdp = true;
      }
    }
    return hop;
  }

  int fd_ = -1;
  int ifindex_ = 0;
  std::uint32_t seq_ = 0;
  std::uint64_t lookups_ = 0;
  std::unordered_map<IpKey, Hop, IpKeyHash> cache_;
};

// Silences libbpf's own printing while we open (its messages would go to stderr, bypassing
// the agent's log); our Status carries what went wrong.
int quiet_print(enum libbpf_print_level, const char*, va_list) { return 0; }
int quiet_xdp_print(enum libxdp_print_level, const char*, va_list) { return 0; }

// One program per interface (of one network namespace), loaded and attached by the first
// transport on it and shared by the others: the cores of a node, one socket per queue, and
// other nodes of this process on other queues. The last one to close detaches it. The registry
// and its mutex are touched only when a transport opens or closes, never on the packet path.
struct AttachedProgram {
  std::uint64_t netns = 0;
  int ifindex = 0;
  bpf_object* obj = nullptr;
  int link_fd = -1;
  int ports_fd = -1;
  int xsks_fd = -1;
  bool native = false;                     // XDP in the driver (else generic, skb mode)
  std::map<std::uint16_t, int> port_refs;  // under programs_mu
  ~AttachedProgram() {
    if (link_fd >= 0) close(link_fd);  // detaches the program
    if (obj != nullptr) bpf_object__close(obj);
  }
};
std::mutex programs_mu;
std::vector<std::weak_ptr<AttachedProgram>> programs;  // under programs_mu

std::uint64_t current_netns() {
  struct stat st {};
  if (stat("/proc/thread-self/ns/net", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_ino);
}

// Loads and attaches the program on `ifindex`, or finds it attached by another transport of
// this process. Call with programs_mu held.
Result<std::shared_ptr<AttachedProgram>> attach_program(int ifindex, const std::string& ifname) {
  const std::uint64_t netns = current_netns();
  std::erase_if(programs, [](const std::weak_ptr<AttachedProgram>& w) { return w.expired(); });
  for (const auto& w : programs) {
    auto p = w.lock();
    if (p && p->netns == netns && p->ifindex == ifindex) return p;
  }
  auto p = std::make_shared<AttachedProgram>();
  p->netns = netns;
  p->ifindex = ifindex;
  LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "rumor_xdp");
  p->obj = bpf_object__open_mem(rumor_xdp_object, rumor_xdp_object_size, &oo);
  if (p->obj == nullptr) return unavailable_errno("opening the XDP program", errno);
  if (int err = bpf_object__load(p->obj); err != 0) {
    return unavailable_errno("loading the XDP program (needs CAP_BPF and CAP_NET_ADMIN)", -err);
  }
  bpf_program* prog = bpf_object__find_program_by_name(p->obj, "rumor_xdp");
  p->ports_fd = bpf_object__find_map_fd_by_name(p->obj, "rumor_ports");
  p->xsks_fd = bpf_object__find_map_fd_by_name(p->obj, "rumor_xsks");
  RUMOR_ASSERT(prog != nullptr);
  RUMOR_ASSERT(p->ports_fd >= 0);
  RUMOR_ASSERT(p->xsks_fd >= 0);
  int attach_err = 0;
  for (const std::uint32_t mode : {static_cast<std::uint32_t>(XDP_FLAGS_DRV_MODE),
                                   static_cast<std::uint32_t>(XDP_FLAGS_SKB_MODE)}) {
    LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = mode);
    const int lfd = bpf_link_create(bpf_program__fd(prog), ifindex, BPF_XDP, &lo);
    attach_err = lfd >= 0 ? 0 : errno;
    if (lfd >= 0) {
      p->link_fd = lfd;
      p->native = mode == XDP_FLAGS_DRV_MODE;
      break;
    }
  }
  if (attach_err != 0) {
    return unavailable_errno("attaching the XDP program to " + ifname, attach_err);
  }
  programs.push_back(p);
  return p;
}

}  // namespace

struct XdpTransport::Impl {
  ~Impl() {
    if (xsk != nullptr) xsk_socket__delete(xsk);  // also leaves the XSKMAP
    if (umem != nullptr) (void)xsk_umem__delete(umem);
    if (program && port_be != 0) {
      const std::lock_guard<std::mutex> lock(programs_mu);
      if (--program->port_refs[port_be] == 0) {
        program->port_refs.erase(port_be);
        (void)bpf_map_delete_elem(program->ports_fd, &port_be);
      }
    }
    program.reset();  // the last transport on the interface detaches the program
    if (udp.fd >= 0) close(udp.fd);
  }

  // Interface
  std::string ifname;
  int ifindex = 0;
  std::uint32_t mtu = 1500;
  MacAddress mac{};
  bool zerocopy = false;

  // Program
  std::shared_ptr<AttachedProgram> program;
  std::uint16_t port_be = 0;  // our port in the program's port map (network order), once added

  // Socket and UMEM
  MappedRegion area;
  xsk_umem* umem = nullptr;
  xsk_socket* xsk = nullptr;
  int xsk_fd = -1;
  xsk_ring_prod fill{};
  xsk_ring_cons comp{};
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
  std::uint32_t frame_bytes = 0;
  std::uint32_t rx_total = 0;  // UMEM frames [0, rx_total) receive; [rx_total, +tx_count) send
  std::uint32_t tx_count = 0;
  std::uint32_t lent = 0;             // receive buffers the caller holds (both paths)
  std::vector<std::uint8_t> rx_lent;  // per receive frame: 1 while the caller holds it

  // Send side
  std::vector<TxMeta> tx_meta;
  std::vector<std::uint8_t> tx_state;
  std::vector<std::uint32_t> tx_free;
  std::vector<std::uint32_t> tx_queue;
  std::uint32_t tx_in_ring = 0;  // posted on the TX ring, completion not yet reaped

  // The kernel socket, and the slow path's receive buffers
  UdpSocket udp;
  MappedRegion slow_area;
  std::vector<std::uint32_t> slow_free;
  bool slow_ready = false;
  std::uint32_t receives = 0;

  NextHops hops;
  std::uint32_t polls = 0;
  std::uint64_t stats_dropped_seen = 0;
  std::uint64_t kernel_path_sends = 0;

  std::byte* frame(std::uint32_t i) const {
    return area.data() + static_cast<std::size_t>(i) * frame_bytes;
  }
  std::byte* tx_payload(std::uint32_t f) const { return frame(rx_total + f) + kFrameHeadroomBytes; }
  std::byte* slow_buffer(std::uint32_t i, std::uint32_t bytes) const {
    return slow_area.data() + static_cast<std::size_t>(i) * bytes;
  }
};

XdpTransport::XdpTransport(const TransportConfig& config)
    : config_(config), impl_(std::make_unique<Impl>()) {}

XdpTransport::~XdpTransport() = default;

Result<std::unique_ptr<XdpTransport>> XdpTransport::open(const TransportConfig& config) {
  if (Status s = validate_config(config); !s) return s;
  if (config.xdp_interface.empty()) {
    return Status::error(Code::kInvalidArgument,
                         "transport: the xdp backend needs an interface (xdp_interface)");
  }
  const unsigned ifindex = if_nametoindex(config.xdp_interface.c_str());
  if (ifindex == 0) {
    return Status::error(Code::kInvalidArgument,
                         "transport: no interface named '" + config.xdp_interface + "'");
  }
  std::unique_ptr<XdpTransport> t(new XdpTransport(config));
  Impl& m = *t->impl_;
  m.ifname = config.xdp_interface;
  m.ifindex = static_cast<int>(ifindex);

  // The interface's MAC and (for a wildcard bind) address.
  Address ip = config.bind;
  const bool wildcard =
      ip.is_ipv4() ? reinterpret_cast<const sockaddr_in*>(ip.sockaddr_ptr())->sin_addr.s_addr == 0
                   : IN6_IS_ADDR_UNSPECIFIED(
                         &reinterpret_cast<const sockaddr_in6*>(ip.sockaddr_ptr())->sin6_addr);
  bool have_mac = false;
  Address if_ip;
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0) return errno_status("getifaddrs", errno);
  for (ifaddrs* i = ifs; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || config.xdp_interface != i->ifa_name) continue;
    if (i->ifa_addr->sa_family == AF_PACKET) {
      const auto* ll = reinterpret_cast<const sockaddr_ll*>(i->ifa_addr);
      if (ll->sll_halen == 6) {
        std::memcpy(m.mac.data(), ll->sll_addr, 6);
        have_mac = true;
      }
    } else if (i->ifa_addr->sa_family == ip.family() && if_ip.empty()) {
      Address a = Address::from_sockaddr(i->ifa_addr,
                                         ip.is_ipv4() ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
      const bool link_local =
          a.is_ipv6() && IN6_IS_ADDR_LINKLOCAL(
                             &reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr())->sin6_addr);
      if (!link_local) if_ip = a;
    }
  }
  freeifaddrs(ifs);
  if (!have_mac) {
    return unavailable("interface " + m.ifname + " has no Ethernet address");
  }
  if (wildcard) {
    if (if_ip.empty()) {
      return Status::error(Code::kInvalidArgument, "transport: interface " + m.ifname + " has no " +
                                                       (ip.is_ipv4() ? "IPv4" : "IPv6") +
                                                       " address to send from");
    }
    ip = if_ip;
  }

  // The kernel socket: holds the port, takes the slow path both ways.
  TransportConfig kc = config;
  kc.gso = false;
  kc.gro = false;
  auto udp = open_udp_socket(kc);
  if (!udp) return udp.status();
  m.udp = udp.value();
  ip.set_port(m.udp.local.port());
  t->local_ = ip;
  {
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", m.ifname.c_str());
    if (ioctl(m.udp.fd, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) {
      m.mtu = static_cast<std::uint32_t>(ifr.ifr_mtu);
    }
  }

  // UMEM: one frame per receive buffer the kernel may fill (recv_buffers for the caller, and a
  // backlog standing in for a socket receive queue, sized from socket_buffer_bytes) and one per
  // send buffer. A frame holds a whole Ethernet frame of datagram_bytes_max (+ the kernel's
  // headroom on receive, kFrameHeadroomBytes on send).
  const std::uint32_t need = config.datagram_bytes_max + kFrameHeadroomBytes;
  m.frame_bytes = need + XDP_PACKET_HEADROOM <= 2048 ? 2048 : 4096;
  if (need + XDP_PACKET_HEADROOM > m.frame_bytes) {
    return unavailable("datagram_bytes_max " + std::to_string(config.datagram_bytes_max) +
                       " does not fit a 4,096-byte UMEM frame");
  }
  const std::uint32_t backlog =
      std::clamp<std::uint32_t>(next_pow2(config.socket_buffer_bytes / m.frame_bytes), 64, 16384);
  m.rx_total = config.recv_buffers + backlog;
  m.tx_count = config.send_buffers;
  const std::uint64_t frames = static_cast<std::uint64_t>(m.rx_total) + m.tx_count;
  auto area = MappedRegion::map(frames * m.frame_bytes);
  if (!area) return area.status();
  m.area = std::move(area.value());
  if (Status s = m.area.populate(); !s) return s;
  auto slow =
      MappedRegion::map(static_cast<std::size_t>(kSlowRxBuffers) * config.datagram_bytes_max);
  if (!slow) return slow.status();
  m.slow_area = std::move(slow.value());
  for (std::uint32_t i = kSlowRxBuffers; i > 0; --i) m.slow_free.push_back(i - 1);

  // The program: loaded from the embedded object, attached through a bpf_link (detached when
  // the last reference closes, so a crashed process leaves nothing behind), native if the
  // driver has XDP, else generic; shared with the other transports on this interface.
  struct Quiet {
    libbpf_print_fn_t bpf = libbpf_set_print(quiet_print);
    libxdp_print_fn_t xdp = libxdp_set_print(quiet_xdp_print);
    ~Quiet() {
      libbpf_set_print(bpf);
      libxdp_set_print(xdp);
    }
  } quiet;
  {
    const std::lock_guard<std::mutex> lock(programs_mu);
    auto program = attach_program(m.ifindex, m.ifname);
    if (!program) return program.status();
    m.program = std::move(program.value());
    const std::uint16_t port_be = htons(t->local_.port());
    const std::uint8_t yes = 1;
    if (bpf_map_update_elem(m.program->ports_fd, &port_be, &yes, BPF_ANY) != 0) {
      return unavailable_errno("setting the port map", errno);
    }
    ++m.program->port_refs[port_be];
    m.port_be = port_be;
  }

  // The socket.
  // The kernel publishes how far it has consumed the fill and TX rings lazily (in batches), so
  // a ring exactly as long as the frames it can hold may look full while it is not: those two
  // rings are twice as long, and a frame coming back always finds a slot.
  xsk_umem_config uc{};
  uc.fill_size = 2 * next_pow2(m.rx_total);
  uc.comp_size = next_pow2(m.tx_count);
  uc.frame_size = m.frame_bytes;
  uc.frame_headroom = 0;
  uc.flags = 0;
  if (int err = xsk_umem__create(&m.umem, m.area.data(), m.area.size(), &m.fill, &m.comp, &uc);
      err != 0) {
    return unavailable_errno("creating the UMEM", -err);
  }
  xsk_socket_config sc{};
  sc.rx_size = next_pow2(m.rx_total);
  sc.tx_size = 2 * next_pow2(m.tx_count);
  sc.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
  sc.xdp_flags = 0;
  int sock_err = 0;
  // A socket closed just before on the same queue releases it from a kernel work queue, a
  // moment later: EBUSY meanwhile. Retried for up to 500 ms (this is set-up, not the data path).
  for (int attempt = 0; attempt < 50; ++attempt) {
    for (const std::uint16_t bind_flags :
         {static_cast<std::uint16_t>(XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP),
          static_cast<std::uint16_t>(XDP_COPY | XDP_USE_NEED_WAKEUP)}) {
      sc.bind_flags = bind_flags;
      sock_err = -xsk_socket__create(&m.xsk, m.ifname.c_str(), config.xdp_queue, m.umem, &m.rx,
                                     &m.tx, &sc);
      if (sock_err == 0) {
        m.zerocopy = (bind_flags & XDP_ZEROCOPY) != 0;
        break;
      }
      m.xsk = nullptr;
    }
    if (sock_err != EBUSY) break;
    usleep(10'000);
  }
  if (sock_err != 0) {
    return unavailable_errno(
        "creating the socket on " + m.ifname + " queue " + std::to_string(config.xdp_queue),
        sock_err);
  }
  m.xsk_fd = xsk_socket__fd(m.xsk);
  const std::uint32_t key = config.xdp_queue;
  if (bpf_map_update_elem(m.program->xsks_fd, &key, &m.xsk_fd, BPF_ANY) != 0) {
    return unavailable_errno("registering the socket in the XSKMAP", errno);
  }

  // Every receive frame starts in the fill ring.
  std::uint32_t idx = 0;
  RUMOR_ASSERT(xsk_ring_prod__reserve(&m.fill, m.rx_total, &idx) == m.rx_total);
  for (std::uint32_t i = 0; i < m.rx_total; ++i) {
    *xsk_ring_prod__fill_addr(&m.fill, idx + i) = static_cast<std::uint64_t>(i) * m.frame_bytes;
  }
  xsk_ring_prod__submit(&m.fill, m.rx_total);

  m.rx_lent.assign(m.rx_total, 0);
  m.tx_meta.assign(m.tx_count, TxMeta{});
  m.tx_state.assign(m.tx_count, kTxFree);
  for (std::uint32_t i = m.tx_count; i > 0; --i) m.tx_free.push_back(i - 1);
  m.tx_queue.reserve(m.tx_count);
  if (Status s = m.hops.open(m.ifindex); !s) return s;
  return t;
}

TransportInfo XdpTransport::info() const {
  const Impl& m = *impl_;
  TransportInfo i;
  i.backend = "xdp";
  i.datagram_bytes_max = config_.datagram_bytes_max;
  i.socket_rcvbuf_bytes = m.udp.rcvbuf_bytes;
  i.socket_sndbuf_bytes = m.udp.sndbuf_bytes;
  i.features = "interface=" + m.ifname + " queue=" + std::to_string(config_.xdp_queue) +
               (m.program->native ? " native" : " generic") + (m.zerocopy ? " zerocopy" : " copy") +
               " frame=" + std::to_string(m.frame_bytes) + " mtu=" + std::to_string(m.mtu) +
               " rx_frames=" + std::to_string(m.rx_total);
  return i;
}

namespace {

// Reaps the completion ring: sent frames go back to the free list.
void reap_completions(XdpTransport::Impl& m, TransportCounters& c) {
  std::uint32_t idx = 0;
  const std::uint32_t n = xsk_ring_cons__peek(&m.comp, m.tx_count, &idx);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t addr = *xsk_ring_cons__comp_addr(&m.comp, idx + i);
    const std::uint32_t frame = static_cast<std::uint32_t>(addr / m.frame_bytes);
    RUMOR_ASSERT(frame >= m.rx_total);
    const std::uint32_t f = frame - m.rx_total;
    RUMOR_ASSERT(f < m.tx_count);
    RUMOR_ASSERT(m.tx_state[f] == kTxInFlight);
    ++c.datagrams_sent;
    c.bytes_sent += m.tx_meta[f].len;
    m.tx_state[f] = kTxFree;
    m.tx_free.push_back(f);
  }
  if (n > 0) {
    xsk_ring_cons__release(&m.comp, n);
    RUMOR_ASSERT(m.tx_in_ring >= n);
    m.tx_in_ring -= n;
  }
}

// Frames posted on the TX ring that the kernel has not consumed yet.
bool tx_ring_pending(const xsk_ring_prod& tx) {
  return __atomic_load_n(tx.consumer, __ATOMIC_ACQUIRE) != *tx.producer;
}

}  // namespace

std::size_t XdpTransport::acquire(std::span<Datagram> out) {
  Impl& m = *impl_;
  if (m.tx_free.size() < out.size()) reap_completions(m, counters_);
  const std::size_t n = std::min(out.size(), m.tx_free.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t f = m.tx_free.back();
    m.tx_free.pop_back();
    RUMOR_ASSERT(m.tx_state[f] == kTxFree);
    m.tx_state[f] = kTxLent;
    Datagram& d = out[i];
    d.data = m.tx_payload(f);
    d.len = 0;
    d.capacity = config_.datagram_bytes_max;
    d.handle = f | kTxHandleBit;
    d.peer = Address();
    d.rx_time_ns = 0;
  }
  if (n < out.size()) ++counters_.tx_no_buffer;
  return n;
}

Status XdpTransport::send(std::span<const Datagram> batch) {
  Impl& m = *impl_;
  Status first;
  for (const Datagram& d : batch) {
    RUMOR_ASSERT((d.handle & kTxHandleBit) != 0);  // a receive buffer handed to send()
    const std::uint32_t f = d.handle & ~kTxHandleBit;
    RUMOR_ASSERT(f < m.tx_count);
    RUMOR_ASSERT(m.tx_state[f] == kTxLent);
    RUMOR_ASSERT(d.data == m.tx_payload(f));
    Status refused;
    DropReason reason = DropReason::kOversized;
    if (d.len > config_.datagram_bytes_max) {
      refused = Status::error(Code::kTooLarge, "datagram is " + std::to_string(d.len) +
                                                   " bytes, datagram_bytes_max is " +
                                                   std::to_string(config_.datagram_bytes_max));
    } else if (d.peer.empty()) {
      reason = DropReason::kBadAddress;
      refused = Status::error(Code::kInvalidArgument, "datagram has no destination address");
    } else if (local_.is_ipv4() && d.peer.is_ipv6()) {
      reason = DropReason::kBadAddress;
      refused =
          Status::error(Code::kInvalidArgument, "cannot send to IPv6 " + d.peer.to_string() +
                                                    " from IPv4 socket " + local_.to_string());
    }
    if (!refused.is_ok()) {
      counters_.drops[static_cast<std::size_t>(reason)] += 1;
      m.tx_state[f] = kTxFree;
      m.tx_free.push_back(f);
      if (first.is_ok()) first = std::move(refused);
      continue;
    }
    m.tx_meta[f] = TxMeta{d.peer, d.len};
    m.tx_state[f] = kTxQueued;
    m.tx_queue.push_back(f);
  }
  return first;
}

void XdpTransport::release(std::span<const Datagram> batch) {
  Impl& m = *impl_;
  std::uint32_t to_fill = 0;
  for (const Datagram& d : batch) {
    if ((d.handle & kTxHandleBit) != 0) {
      const std::uint32_t f = d.handle & ~kTxHandleBit;
      RUMOR_ASSERT(f < m.tx_count);
      RUMOR_ASSERT(m.tx_state[f] == kTxLent);  // queued buffers belong to the transport
      m.tx_state[f] = kTxFree;
      m.tx_free.push_back(f);
      continue;
    }
    RUMOR_ASSERT(m.lent > 0);  // released twice?
    --m.lent;
    if ((d.handle & kSlowHandleBit) != 0) {
      const std::uint32_t i = d.handle & ~kSlowHandleBit;
      RUMOR_ASSERT(i < kSlowRxBuffers);
      m.slow_free.push_back(i);
      continue;
    }
    RUMOR_ASSERT(d.handle < m.rx_total);
    RUMOR_ASSERT(m.rx_lent[d.handle] == 1);  // released twice?
    m.rx_lent[d.handle] = 0;
    ++to_fill;
  }
  if (to_fill == 0) return;
  // The fill ring is twice as long as the receive frames: there is always room for these.
  std::uint32_t idx = 0;
  RUMOR_ASSERT(xsk_ring_prod__reserve(&m.fill, to_fill, &idx) == to_fill);
  std::uint32_t k = 0;
  for (const Datagram& d : batch) {
    if ((d.handle & (kTxHandleBit | kSlowHandleBit)) != 0) continue;
    *xsk_ring_prod__fill_addr(&m.fill, idx + k++) =
        static_cast<std::uint64_t>(d.handle) * m.frame_bytes;
  }
  xsk_ring_prod__submit(&m.fill, to_fill);
}

std::size_t XdpTransport::receive(std::span<Datagram> out) {
  Impl& m = *impl_;
  if (out.empty()) return 0;
  const std::uint32_t room = config_.recv_buffers - m.lent;
  std::size_t want = std::min<std::size_t>(out.size(), room);
  const std::uint64_t now = monotonic_ns();
  std::size_t n = 0;
  // The kernel socket first (it is rarely ready, and what it holds arrived first): when poll()
  // saw it readable, and every 64th receive so a busy XDP path cannot starve it.
  if ((m.slow_ready || (++m.receives & 63) == 0)) {
    m.slow_ready = false;
    const std::uint32_t cap = config_.datagram_bytes_max;
    while (n < want && !m.slow_free.empty()) {
      const std::uint32_t i = m.slow_free.back();
      sockaddr_storage from{};
      iovec iov{m.slow_buffer(i, cap), cap};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof(from);
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      const ssize_t r = recvmsg(m.udp.fd, &msg, MSG_DONTWAIT | MSG_TRUNC);
      if (r < 0) break;
      if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(r) > cap) {
        counters_.drops[static_cast<std::size_t>(DropReason::kTruncated)] += 1;
        continue;
      }
      m.slow_free.pop_back();
      Datagram& d = out[n++];
      d.data = m.slow_buffer(i, cap);
      d.len = static_cast<std::uint32_t>(r);
      d.capacity = d.len;
      d.handle = i | kSlowHandleBit;
      d.peer = Address::from_sockaddr(reinterpret_cast<const sockaddr*>(&from), msg.msg_namelen);
      d.rx_time_ns = now;
      ++m.lent;
      ++counters_.datagrams_received;
      counters_.bytes_received += d.len;
    }
  }
  // Then the RX ring. Frames that fail the header checks go straight back to the fill ring.
  std::uint32_t idx = 0;
  const std::uint32_t got =
      want > n ? xsk_ring_cons__peek(&m.rx, static_cast<std::uint32_t>(want - n), &idx) : 0;
  std::uint32_t refill = 0;
  std::uint64_t refill_addrs[64];
  for (std::uint32_t k = 0; k < got; ++k) {
    const xdp_desc* desc = xsk_ring_cons__rx_desc(&m.rx, idx + k);
    const std::uint32_t frame = static_cast<std::uint32_t>(desc->addr / m.frame_bytes);
    RUMOR_ASSERT(frame < m.rx_total);
    std::byte* bytes = m.area.data() + desc->addr;
    ParsedFrame p;
    const FrameError e = parse_udp_frame({bytes, desc->len}, &p);
    const bool ours = e == FrameError::kNone && p.dst.port() == local_.port() &&
                      (same_ip(p.dst, local_) ||
                       (local_.is_ipv6() && p.dst.is_ipv4()));  // a v6 socket takes v4 too
    if (!ours || p.payload_len > config_.datagram_bytes_max) {
      counters_
          .drops[static_cast<std::size_t>(ours ? DropReason::kTruncated : DropReason::kBadFrame)] +=
          1;
      if (refill == 64) {
        std::uint32_t fi = 0;
        RUMOR_ASSERT(xsk_ring_prod__reserve(&m.fill, refill, &fi) == refill);
        for (std::uint32_t j = 0; j < refill; ++j) {
          *xsk_ring_prod__fill_addr(&m.fill, fi + j) = refill_addrs[j];
        }
        xsk_ring_prod__submit(&m.fill, refill);
        refill = 0;
      }
      refill_addrs[refill++] = static_cast<std::uint64_t>(frame) * m.frame_bytes;
      continue;
    }
    RUMOR_ASSERT(m.rx_lent[frame] == 0);
    m.rx_lent[frame] = 1;
    Datagram& d = out[n++];
    d.data = bytes + p.payload_offset;
    d.len = p.payload_len;
    d.capacity = d.len;
    d.handle = frame;
    d.peer = p.src;
    d.rx_time_ns = now;
    ++m.lent;
    ++counters_.datagrams_received;
    counters_.bytes_received += d.len;
  }
  if (got > 0) xsk_ring_cons__release(&m.rx, got);
  if (refill > 0) {
    std::uint32_t fi = 0;
    RUMOR_ASSERT(xsk_ring_prod__reserve(&m.fill, refill, &fi) == refill);
    for (std::uint32_t j = 0; j < refill; ++j) {
      *xsk_ring_prod__fill_addr(&m.fill, fi + j) = refill_addrs[j];
    }
    xsk_ring_prod__submit(&m.fill, refill);
  }
  if (room == 0 && (xsk_cons_nb_avail(&m.rx, 1) > 0 || m.slow_ready)) ++counters_.rx_no_buffer;
  return n;
}

Status XdpTransport::flush() {
  Impl& m = *impl_;
  if (!m.tx_queue.empty()) {
    const std::uint64_t now = monotonic_ns();
    std::uint32_t idx = 0;
    const auto queued = static_cast<std::uint32_t>(m.tx_queue.size());
    // The TX ring is at least as long as the send pool, so every queued frame has a slot.
    RUMOR_ASSERT(xsk_ring_prod__reserve(&m.tx, queued, &idx) == queued);
    std::uint32_t posted = 0;
    for (const std::uint32_t f : m.tx_queue) {
      const TxMeta& meta = m.tx_meta[f];
      Address dst = meta.peer;
      const std::uint32_t hdr = frame_header_bytes(dst);
      const bool fits = meta.len + hdr - kEthHeaderBytes <= m.mtu;
      const Hop* hop = nullptr;
      if (dst.family() == local_.family() && fits) hop = &m.hops.lookup(dst, now);
      if (hop != nullptr && hop->xdp) {
        std::byte* start = build_udp_frame(m.tx_payload(f), meta.len, m.mac, hop->mac, local_, dst);
        xdp_desc* desc = xsk_ring_prod__tx_desc(&m.tx, idx + posted++);
        desc->addr = static_cast<std::uint64_t>(start - m.area.data());
        desc->len = meta.len + hdr;
        desc->options = 0;
        m.tx_state[f] = kTxInFlight;
        continue;
      }
      // The kernel's path: not resolved yet, another interface, local, or larger than the MTU.
      if (local_.is_ipv6() && dst.is_ipv4()) dst = dst.to_ipv6_mapped();
      const ssize_t r = sendto(m.udp.fd, m.tx_payload(f), meta.len, MSG_DONTWAIT,
                               dst.sockaddr_ptr(), dst.sockaddr_len());
      ++m.kernel_path_sends;
      ++counters_.submits;
      if (r == static_cast<ssize_t>(meta.len)) {
        ++counters_.datagrams_sent;
        counters_.bytes_sent += meta.len;
      } else {
        counters_.drops[static_cast<std::size_t>(DropReason::kSendFailed)] += 1;
      }
      m.tx_state[f] = kTxFree;
      m.tx_free.push_back(f);
    }
    m.tx_queue.clear();
    // Unused reservations are given back by submitting only what was posted: the ring's
    // cached producer is rewound to match.
    m.tx.cached_prod -= queued - posted;
    if (posted > 0) {
      xsk_ring_prod__submit(&m.tx, posted);
      m.tx_in_ring += posted;
    }
  }
  // Kick: a copy-mode socket sends only inside a system call, at most 32 frames per call.
  if (m.tx_in_ring > 0 && tx_ring_pending(m.tx) && xsk_ring_prod__needs_wakeup(&m.tx)) {
    const std::uint32_t kicks_max = m.tx_in_ring / kKickBatch + 4;
    for (std::uint32_t k = 0; k < kicks_max && tx_ring_pending(m.tx); ++k) {
      ++counters_.submits;
      if (sendto(m.xsk_fd, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) continue;
      const int err = errno;
      if (err == EAGAIN || err == EBUSY || err == ENOBUFS) continue;
      // Anything else (ENETDOWN while the interface is down, say) leaves the frames on the ring
      // for the next kick: not an error of the transport, and the send pool's back-pressure
      // shows it. Returning an error would skip poll()'s wait and spin the reactor.
      break;
    }
  }
  reap_completions(m, counters_);
  return Status::ok();
}

Status XdpTransport::poll(std::uint64_t timeout_ns, std::uint32_t wait_count) {
  (void)wait_count;  // every wake-up is a datagram or the timeout: nothing to batch
  Impl& m = *impl_;
  if (Status s = flush(); !s) return s;
  if ((++m.polls % kStatsEveryPolls) == 0) {
    xdp_statistics st{};
    socklen_t len = sizeof(st);
    if (getsockopt(m.xsk_fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
      const std::uint64_t dropped = st.rx_dropped + st.rx_ring_full;
      counters_.drops[static_cast<std::size_t>(DropReason::kSocketOverflow)] +=
          dropped - m.stats_dropped_seen;
      m.stats_dropped_seen = dropped;
    }
  }
  // Not waiting only for frames already received: sends in flight complete inside the kick in
  // copy mode, and a ring stuck behind a downed interface must not turn this into a spin.
  const bool ready = xsk_cons_nb_avail(&m.rx, 1) > 0;
  pollfd fds[2] = {{m.xsk_fd, POLLIN, 0}, {m.udp.fd, POLLIN, 0}};
  timespec ts{};
  if (!ready) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
  }
  const int r = ppoll(fds, 2, &ts, nullptr);
  if (r < 0 && errno != EINTR) return errno_status("ppoll", errno);
  if (r > 0 && (fds[1].revents & POLLIN) != 0) m.slow_ready = true;
  reap_completions(m, counters_);
  return Status::ok();
}

}  // namespace rumor::io

#else  // !RUMOR_HAVE_XDP

namespace rumor::io {

bool xdp_built() { return false; }

struct XdpTransport::Impl {};
XdpTransport::XdpTransport(const TransportConfig& config) : config_(config) {}
XdpTransport::~XdpTransport() = default;

Result<std::unique_ptr<XdpTransport>> XdpTransport::open(const TransportConfig&) {
  return Status::error(Code::kUnavailable,
                       "AF_XDP: this build has no AF_XDP support (libxdp, libbpf or clang for "
                       "the BPF program were not found when it was configured)");
}
TransportInfo XdpTransport::info() const { return {}; }
std::size_t XdpTransport::receive(std::span<Datagram>) { return 0; }
std::size_t XdpTransport::acquire(std::span<Datagram>) { return 0; }
Status XdpTransport::send(std::span<const Datagram>) { return Status::ok(); }
void XdpTransport::release(std::span<const Datagram>) {}
Status XdpTransport::flush() { return Status::ok(); }
Status XdpTransport::poll(std::uint64_t, std::uint32_t) { return Status::ok(); }

}  // namespace rumor::io

#endif
