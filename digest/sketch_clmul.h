// Private to digest/sketch*.cc: the PCLMULQDQ build of the sketch's arithmetic
// (sketch_clmul.cc, compiled with -mpclmul). RUMOR_SKETCH_HAVE_CLMUL is set by
// digest/CMakeLists.txt on x86-64; call these only when gf48::clmul_available().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "digest/sketch.h"

#ifndef RUMOR_SKETCH_HAVE_CLMUL
#define RUMOR_SKETCH_HAVE_CLMUL 0
#endif

namespace rumor::digest {
#if RUMOR_SKETCH_HAVE_CLMUL
std::uint64_t sketch_clmul_mul(std::uint64_t a, std::uint64_t b);
void sketch_clmul_toggle_batch(std::uint64_t* s, std::uint32_t c, const std::uint64_t* x,
                               std::size_t n);
SketchDecodeResult sketch_clmul_decode(std::span<const std::uint64_t> syndromes,
                                       std::uint32_t elements_max,
                                       std::vector<std::uint64_t>& out);
#endif
}  // namespace rumor::digest
