// Address: parse, format, compare. Configuration-time code (parse allocates for its messages);
// the data path only copies, compares and hashes Addresses.
#include <arpa/inet.h>
#include <net/if.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "rumor/transport.h"

namespace rumor {
namespace {

Status bad(std::string_view text, std::string_view why) {
  std::string m = "address '";
  m.append(text);
  m += "': ";
  m.append(why);
  return Status::error(Code::kInvalidArgument, std::move(m));
}

// Port digits: 0..65535, no sign, no spaces.
bool parse_port(std::string_view s, std::uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *port = static_cast<std::uint16_t>(v);
  return true;
}

bool looks_like_name(std::string_view host) {
  for (char c : host) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-') return true;
  }
  return false;
}

}  // namespace

Address::Address() { std::memset(&u_, 0, sizeof(u_)); }

Result<Address> Address::parse(std::string_view text) {
  if (text.empty()) return bad(text, "empty; expected host:port such as 127.0.0.1:7000");
  std::string_view host;
  std::string_view port_text;
  const bool bracketed = text.front() == '[';
  if (bracketed) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return bad(text, "missing ']' after IPv6 address");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return bad(text, "missing port; expected [ipv6]:port such as [::1]:7000");
    }
    port_text = rest.substr(1);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return bad(text, "missing port; expected host:port such as 127.0.0.1:7000");
    }
    if (text.find(':') != colon) {
      return bad(text, "IPv6 addresses need brackets, as in [::1]:7000");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  std::uint16_t port = 0;
  if (!parse_port(port_text, &port)) return bad(text, "port must be a number from 0 to 65535");
  if (host.empty()) return bad(text, "missing host");
  if (host.size() > INET6_ADDRSTRLEN + IF_NAMESIZE) return bad(text, "host too long");

  char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  Address a;
  if (!bracketed) {
    std::memcpy(buf, host.data(), host.size());
    buf[host.size()] = '\0';
    in_addr ip{};
    if (inet_pton(AF_INET, buf, &ip) != 1) {
      if (looks_like_name(host)) {
        return bad(text, "host names are not resolved here; give a numeric IPv4 or [IPv6]");
      }
      return bad(text, "not an IPv4 address");
    }
    a.u_.v4.sin_family = AF_INET;
    a.u_.v4.sin_port = htons(port);
    a.u_.v4.sin_addr = ip;
    return a;
  }
  std::string_view ip_text = host;
  std::uint32_t scope = 0;
  if (const std::size_t pct = host.find('%'); pct != std::string_view::npos) {
    ip_text = host.substr(0, pct);
    const std::string_view zone = host.substr(pct + 1);
    if (zone.empty()) return bad(text, "empty IPv6 zone after '%'");
    std::uint16_t numeric = 0;
    if (parse_port(zone, &numeric)) {
      scope = numeric;
    } else {
      std::memcpy(buf, zone.data(), zone.size());
      buf[zone.size()] = '\0';
      scope = if_nametoindex(buf);
      if (scope == 0) return bad(text, "unknown network interface in IPv6 zone");
    }
  }
  std::memcpy(buf, ip_text.data(), ip_text.size());
  buf[ip_text.size()] = '\0';
  in6_addr ip6{};
  if (inet_pton(AF_INET6, buf, &ip6) != 1) return bad(text, "not an IPv6 address");
  a.u_.v6.sin6_family = AF_INET6;
  a.u_.v6.sin6_port = htons(port);
  a.u_.v6.sin6_addr = ip6;
  a.u_.v6.sin6_scope_id = scope;
  return a;
}

Address Address::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Address a;
  if (sa == nullptr || len < static_cast<socklen_t>(sizeof(sa_family_t))) return a;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof(in));
    a.u_.v4.sin_family = AF_INET;
    a.u_.v4.sin_port = in.sin_port;
    a.u_.v4.sin_addr = in.sin_addr;
    return a;
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof(in6));
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      a.u_.v4.sin_family = AF_INET;
      a.u_.v4.sin_port = in6.sin6_port;
      std::memcpy(&a.u_.v4.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
      return a;
    }
    // flowinfo is per-packet, not part of the endpoint's identity: leave it zero.
    a.u_.v6.sin6_family = AF_INET6;
    a.u_.v6.sin6_port = in6.sin6_port;
    a.u_.v6.sin6_addr = in6.sin6_addr;
    a.u_.v6.sin6_scope_id = in6.sin6_scope_id;
  }
  return a;
}

Address Address::ipv4(std::uint32_t host_order_ip, std::uint16_t port) {
  Address a;
  a.u_.v4.sin_family = AF_INET;
  a.u_.v4.sin_port = htons(port);
  a.u_.v4.sin_addr.s_addr = htonl(host_order_ip);
  return a;
}

Address Address::ipv6(const std::array<std::uint8_t, 16>& ip, std::uint16_t port,
                      std::uint32_t scope_id) {
  Address a;
  a.u_.v6.sin6_family = AF_INET6;
  a.u_.v6.sin6_port = htons(port);
  std::memcpy(&a.u_.v6.sin6_addr, ip.data(), 16);
  a.u_.v6.sin6_scope_id = scope_id;
  return a;
}

std::uint16_t Address::port() const {
  if (is_ipv4()) return ntohs(u_.v4.sin_port);
  if (is_ipv6()) return ntohs(u_.v6.sin6_port);
  return 0;
}

void Address::set_port(std::uint16_t port) {
  if (is_ipv4()) u_.v4.sin_port = htons(port);
  if (is_ipv6()) u_.v6.sin6_port = htons(port);
}

socklen_t Address::sockaddr_len() const {
  if (is_ipv4()) return sizeof(sockaddr_in);
  if (is_ipv6()) return sizeof(sockaddr_in6);
  return 0;
}

Address Address::to_ipv6_mapped() const {
  if (!is_ipv4()) return *this;
  Address a;
  a.u_.v6.sin6_family = AF_INET6;
  a.u_.v6.sin6_port = u_.v4.sin_port;
  a.u_.v6.sin6_addr.s6_addr[10] = 0xff;
  a.u_.v6.sin6_addr.s6_addr[11] = 0xff;
  std::memcpy(&a.u_.v6.sin6_addr.s6_addr[12], &u_.v4.sin_addr, 4);
  return a;
}

std::string Address::to_string() const {
  // Formatted into a fixed buffer: "[" + IPv6 + "%" + scope + "]:" + port fits in 80 bytes.
  char ip[INET6_ADDRSTRLEN];
  char out[80];
  if (is_ipv4()) {
    inet_ntop(AF_INET, &u_.v4.sin_addr, ip, sizeof(ip));
    std::snprintf(out, sizeof(out), "%s:%u", ip, static_cast<unsigned>(port()));
  } else if (is_ipv6()) {
    inet_ntop(AF_INET6, &u_.v6.sin6_addr, ip, sizeof(ip));
    if (u_.v6.sin6_scope_id != 0) {
      std::snprintf(out, sizeof(out), "[%s%%%u]:%u", ip,
                    static_cast<unsigned>(u_.v6.sin6_scope_id), static_cast<unsigned>(port()));
    } else {
      std::snprintf(out, sizeof(out), "[%s]:%u", ip, static_cast<unsigned>(port()));
    }
  } else {
    return std::string("<none>");
  }
  return std::string(out);
}

namespace {
// The fields that make an endpoint, compared and hashed member by member (not as raw bytes,
// which would drag in the padding's bytes).
struct Key {
  sa_family_t family;
  std::uint16_t port;  // network order: only equality and a total order are needed
  std::uint32_t scope;
  std::array<std::uint8_t, 16> ip;
};
}  // namespace

static Key key_of(const Address& a) {
  Key k{a.family(), 0, 0, {}};
  const sockaddr* sa = a.sockaddr_ptr();
  if (a.is_ipv4()) {
    sockaddr_in in;
    std::memcpy(&in, sa, sizeof(in));
    k.port = in.sin_port;
    std::memcpy(k.ip.data(), &in.sin_addr, 4);
  } else if (a.is_ipv6()) {
    sockaddr_in6 in6;
    std::memcpy(&in6, sa, sizeof(in6));
    k.port = in6.sin6_port;
    k.scope = in6.sin6_scope_id;
    std::memcpy(k.ip.data(), &in6.sin6_addr, 16);
  }
  return k;
}

std::size_t Address::hash() const {
  // FNV-1a over the identifying fields: addresses are hashed per packet only in the
  // simulator's routing table, where this is plenty.
  const Key k = key_of(*this);
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(k.family, 2);
  mix(k.port, 2);
  mix(k.scope, 4);
  for (std::uint8_t b : k.ip) mix(b, 1);
  return static_cast<std::size_t>(h);
}

bool operator==(const Address& a, const Address& b) {
  const Key x = key_of(a);
  const Key y = key_of(b);
  return x.family == y.family && x.port == y.port && x.scope == y.scope && x.ip == y.ip;
}

bool operator<(const Address& a, const Address& b) {
  const Key x = key_of(a);
  const Key y = key_of(b);
  return std::tie(x.family, x.ip, x.port, x.scope) < std::tie(y.family, y.ip, y.port, y.scope);
}

}  // namespace rumor
