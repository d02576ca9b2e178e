// BloomView::decode on attacker-chosen parameters (Firedancer's out-of-bounds read), then
// queries: the first byte picks the caller's block limit.
#include <cstdint>
#include <span>

#include "digest/bloom.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::digest;
  if (size == 0) return 0;
  const std::uint32_t blocks_max = 1u + data[0] * 16u;
  ByteReader r(std::span(data + 1, size - 1));
  BloomView v;
  if (BloomView::decode(r, blocks_max, &v)) {
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 64; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      (void)v.may_contain(x);
    }
    (void)v.may_contain_entry(x, rumor::Version{1, 2});
  }
  return 0;
}
