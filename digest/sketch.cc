#include "digest/sketch.h"

#include <algorithm>

#include "base/assert.h"
#include "digest/sketch_clmul.h"
#include "digest/sketch_kernels.h"

namespace rumor::digest {

namespace gf48 {

bool clmul_available() {
#if RUMOR_SKETCH_HAVE_CLMUL
  // Asked once: the answer does not change while the process runs.
  static const bool has = __builtin_cpu_supports("pclmul") != 0;
  return has;
#else
  return false;
#endif
}

std::uint64_t mul_portable(std::uint64_t a, std::uint64_t b) {
  return PortableMul::mul(a & kMask48, b & kMask48);
}

std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
#if RUMOR_SKETCH_HAVE_CLMUL
  if (clmul_available()) return sketch_clmul_mul(a & kMask48, b & kMask48);
#endif
  return mul_portable(a, b);
}

std::uint64_t inv(std::uint64_t a) {
  RUMOR_ASSERT((a & kMask48) != 0);
  return inv_impl<PortableMul>(a & kMask48);
}

}  // namespace gf48

void sketch_toggle_batch_portable(std::span<std::uint64_t> syndromes,
                                  std::span<const std::uint64_t> elements) {
  std::vector<std::uint64_t> x(elements.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = elements[i] & kMask48;
  toggle_batch_impl<PortableMul>(syndromes.data(), static_cast<std::uint32_t>(syndromes.size()),
                                 x.data(), x.size());
}

void Sketch::toggle_batch(std::span<const std::uint64_t> elements) {
  if (s_.empty() || elements.empty()) return;
  // Mask in chunks on the stack: no allocation on the write path.
  constexpr std::size_t kChunk = 64;
  std::uint64_t x[kChunk];
  for (std::size_t i = 0; i < elements.size(); i += kChunk) {
    const std::size_t n = std::min(kChunk, elements.size() - i);
    for (std::size_t j = 0; j < n; ++j) x[j] = elements[i + j] & kMask48;
#if RUMOR_SKETCH_HAVE_CLMUL
    if (gf48::clmul_available()) {
      sketch_clmul_toggle_batch(s_.data(), capacity(), x, n);
      continue;
    }
#endif
    toggle_batch_impl<PortableMul>(s_.data(), capacity(), x, n);
  }
}

void Sketch::merge(std::span<const std::uint64_t> other) {
  const std::size_t n = std::min(s_.size(), other.size());
  for (std::size_t i = 0; i < n; ++i) s_[i] ^= other[i];
}

void put_sketch(ByteWriter& w, std::span<const std::uint64_t> syndromes) {
  for (const std::uint64_t s : syndromes) {
    RUMOR_ASSERT((s & ~kMask48) == 0);
    w.uint_n(s, kSketchSyndromeBytes);
  }
}

void read_sketch_xor(ByteReader& r, std::span<std::uint64_t> out) {
  for (auto& s : out) s ^= r.uint_n(kSketchSyndromeBytes);
}

namespace {
SketchDecodeResult check_decode_args(std::span<const std::uint64_t> syndromes,
                                     std::uint32_t elements_max) {
  if (syndromes.size() > kSketchCapacityMax || elements_max > syndromes.size()) {
    return SketchDecodeResult::kInvalid;
  }
  for (const std::uint64_t s : syndromes) {
    if ((s & ~kMask48) != 0) return SketchDecodeResult::kInvalid;
  }
  return SketchDecodeResult::kDecoded;
}
}  // namespace

SketchDecodeResult sketch_decode_portable(std::span<const std::uint64_t> syndromes,
                                          std::uint32_t elements_max,
                                          std::vector<std::uint64_t>& out) {
  out.clear();
  if (check_decode_args(syndromes, elements_max) != SketchDecodeResult::kDecoded) {
    return SketchDecodeResult::kInvalid;
  }
  return decode_impl<PortableMul>(syndromes, elements_max, out);
}

SketchDecodeResult sketch_decode(std::span<const std::uint64_t> syndromes,
                                 std::uint32_t elements_max, std::vector<std::uint64_t>& out) {
  out.clear();
  if (check_decode_args(syndromes, elements_max) != SketchDecodeResult::kDecoded) {
    return SketchDecodeResult::kInvalid;
  }
#if RUMOR_SKETCH_HAVE_CLMUL
  if (gf48::clmul_available()) return sketch_clmul_decode(syndromes, elements_max, out);
#endif
  return decode_impl<PortableMul>(syndromes, elements_max, out);
}

}  // namespace rumor::digest
