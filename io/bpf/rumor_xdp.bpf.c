// rumor's XDP program (docs/transport.md "AF_XDP"): UDP datagrams to the node's port go to the
// AF_XDP socket of the queue they arrived on; everything else (ARP, neighbour discovery, other
// ports, IP fragments, VLAN-tagged frames, IPv6 extension headers) passes to the kernel.
// Compiled at build time with clang -target bpf and embedded in the library (io/CMakeLists.txt).
// The user-space side (io/xdp_transport.cc) fills both maps after loading.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// Queue index -> AF_XDP socket.
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} rumor_xsks SEC(".maps");

// UDP destination port (network order) -> 1 for the ports rumor listens on.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u16);
  __type(value, __u8);
} rumor_ports SEC(".maps");

SEC("xdp")
int rumor_xdp(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_PASS;
  struct udphdr* udp;
  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    if ((void*)(ip + 1) > data_end) return XDP_PASS;
    if (ip->protocol != IPPROTO_UDP || ip->ihl < 5) return XDP_PASS;
    if (ip->frag_off & bpf_htons(0x3fff)) return XDP_PASS;  // fragments: the kernel reassembles
    udp = (void*)ip + ip->ihl * 4;
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > data_end) return XDP_PASS;
    if (ip6->nexthdr != IPPROTO_UDP) return XDP_PASS;
    udp = (void*)(ip6 + 1);
  } else {
    return XDP_PASS;
  }
  if ((void*)(udp + 1) > data_end) return XDP_PASS;
  __u16 port = udp->dest;
  if (!bpf_map_lookup_elem(&rumor_ports, &port)) return XDP_PASS;
  // No socket on this queue: the kernel gets it (XDP_PASS as the fallback action).
  return bpf_redirect_map(&rumor_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
