// The sketch's arithmetic on the carry-less multiply instruction. This file alone is built with
// -mpclmul (digest/CMakeLists.txt, x86-64 only); sketch.cc calls into it only after checking the
// CPU has PCLMULQDQ.
#include "digest/sketch_clmul.h"

#if RUMOR_SKETCH_HAVE_CLMUL

#include <wmmintrin.h>

#include "digest/sketch_kernels.h"

namespace rumor::digest {
namespace {

// The reduction runs on the multiplier too: with f = x^48 + r, the bits of a product above 48
// (a byte shift of 6) times r fold back below 48, and the few bits that fold pushes above 48
// fold once more. Three carry-less multiplies and no 64-bit shifting: the write path's
// toggle_batch is bound by instruction count, and this is about a third of the shift-and-XOR
// reduction's (reduce95).
inline __m128i mul_x(__m128i a, __m128i b, __m128i r, __m128i mask) {
  const __m128i p = _mm_clmulepi64_si128(a, b, 0);
  const __m128i q = _mm_clmulepi64_si128(_mm_srli_si128(p, 6), r, 0);
  const __m128i q2 = _mm_clmulepi64_si128(_mm_srli_si128(q, 6), r, 0);
  return _mm_and_si128(_mm_xor_si128(_mm_xor_si128(p, q), q2), mask);
}
// r and the 48-bit mask as vectors (functions, not globals: no static initializer in a file
// built for an instruction set the CPU may lack).
inline __m128i r_x() { return _mm_set_epi64x(0, 0x2D); }
inline __m128i mask_x() { return _mm_set_epi64x(0, static_cast<long long>(kMask48)); }

struct ClmulMul {
  static std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
    const __m128i p = mul_x(_mm_cvtsi64_si128(static_cast<long long>(a)),
                            _mm_cvtsi64_si128(static_cast<long long>(b)), r_x(), mask_x());
    return static_cast<std::uint64_t>(_mm_cvtsi128_si64(p));
  }
};

// s_k ^= x^(2k+1): the power chains of kLanes elements side by side, all in vector registers.
void toggle_lanes(std::uint64_t* s, std::uint32_t c, const std::uint64_t* x, std::size_t n) {
  constexpr std::size_t kLanes = 6;  // 6 chains + their squares + 2 constants fit 16 registers
  const __m128i r = r_x();
  const __m128i mask = mask_x();
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m128i p[kLanes];
    __m128i sq[kLanes];
    for (std::size_t l = 0; l < kLanes; ++l) {
      p[l] = _mm_cvtsi64_si128(static_cast<long long>(x[i + l]));
      sq[l] = mul_x(p[l], p[l], r, mask);
    }
    for (std::uint32_t k = 0;;) {
      __m128i acc = p[0];
      for (std::size_t l = 1; l < kLanes; ++l) acc = _mm_xor_si128(acc, p[l]);
      s[k] ^= static_cast<std::uint64_t>(_mm_cvtsi128_si64(acc));
      if (++k == c) break;
      for (std::size_t l = 0; l < kLanes; ++l) p[l] = mul_x(p[l], sq[l], r, mask);
    }
  }
  if (i < n) toggle_batch_impl<ClmulMul>(s, c, x + i, n - i);
}

}  // namespace

std::uint64_t sketch_clmul_mul(std::uint64_t a, std::uint64_t b) { return ClmulMul::mul(a, b); }

void sketch_clmul_toggle_batch(std::uint64_t* s, std::uint32_t c, const std::uint64_t* x,
                               std::size_t n) {
  toggle_lanes(s, c, x, n);
}

SketchDecodeResult sketch_clmul_decode(std::span<const std::uint64_t> syndromes,
                                       std::uint32_t elements_max,
                                       std::vector<std::uint64_t>& out) {
  return decode_impl<ClmulMul>(syndromes, elements_max, out);
}

}  // namespace rumor::digest

#endif  // RUMOR_SKETCH_HAVE_CLMUL
