// Fuzz target: the AF_XDP transport's frame parser (io/xdp_frame.h), which runs on every frame
// the XDP program redirects, i.e. on bytes anyone on the link can send. It must never read
// outside the frame; what it accepts must lie inside the frame, and must survive the oracle:
// built again from what was parsed, the frame parses to the same addresses and payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "io/xdp_frame.h"

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy of exactly `size` bytes on the heap, so ASan catches a read one past the end.
  std::vector<std::byte> frame(size);
  if (size > 0) std::memcpy(frame.data(), data, size);
  rumor::io::ParsedFrame p;
  if (rumor::io::parse_udp_frame(frame, &p) != rumor::io::FrameError::kNone) return 0;
  check(p.payload_offset <= size);
  check(p.payload_len <= size - p.payload_offset);
  check(p.src.family() == p.dst.family());
  if (p.payload_len > 65000) return 0;

  std::vector<std::byte> again(rumor::io::kFrameHeadroomBytes + p.payload_len);
  std::byte* payload = again.data() + rumor::io::kFrameHeadroomBytes;
  if (p.payload_len > 0) std::memcpy(payload, frame.data() + p.payload_offset, p.payload_len);
  const rumor::io::MacAddress dst_mac{};
  std::byte* start =
      rumor::io::build_udp_frame(payload, p.payload_len, p.src_mac, dst_mac, p.src, p.dst);
  rumor::io::ParsedFrame q;
  const std::span<const std::byte> rebuilt(
      start, static_cast<std::size_t>(payload + p.payload_len - start));
  check(rumor::io::parse_udp_frame(rebuilt, &q) == rumor::io::FrameError::kNone);
  check(q.src == p.src);
  check(q.dst == p.dst);
  check(q.src_mac == p.src_mac);
  check(q.payload_len == p.payload_len);
  check(std::memcmp(rebuilt.data() + q.payload_offset, frame.data() + p.payload_offset,
                    p.payload_len) == 0);
  return 0;
}
