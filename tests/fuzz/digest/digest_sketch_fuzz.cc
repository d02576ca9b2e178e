// The BCH sketch decoder on attacker-chosen syndromes. The first byte picks how many elements
// the decoding accepts (capacity minus 0..3 spare syndromes); the rest are syndromes in wire
// form (6 bytes each), XORed with a small local sketch as a session would. Whatever the input,
// the decoder must answer within its bounds, and a "decoded" answer must give back every
// syndrome (checked by sketching it again, on the portable path too).
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "digest/sketch.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::digest;
  if (size == 0) return 0;
  const std::size_t c = std::min<std::size_t>((size - 1) / kSketchSyndromeBytes, kSketchCapacityMax);
  const std::uint32_t spare = data[0] & 3;
  const auto elements_max = static_cast<std::uint32_t>(c > spare ? c - spare : 0);
  Sketch local(static_cast<std::uint32_t>(c));
  for (std::uint64_t i = 1; i <= 3; ++i) local.toggle(i * 0x9e3779b97f4a7c15ull);
  std::vector<std::uint64_t> diff(local.syndromes().begin(), local.syndromes().end());
  ByteReader r(std::span(data + 1, size - 1));
  read_sketch_xor(r, diff);
  RUMOR_ASSERT(r.ok());
  std::vector<std::uint64_t> out;
  const SketchDecodeResult res = sketch_decode(diff, elements_max, out);
  RUMOR_ASSERT(res != SketchDecodeResult::kInvalid);
  if (res == SketchDecodeResult::kDecoded) {
    RUMOR_ASSERT(out.size() <= elements_max);
    RUMOR_ASSERT(std::is_sorted(out.begin(), out.end()));
    Sketch again(static_cast<std::uint32_t>(c));
    again.toggle_batch(out);
    RUMOR_ASSERT(std::equal(diff.begin(), diff.end(), again.syndromes().begin()));
    std::vector<std::uint64_t> portable(c, 0);
    sketch_toggle_batch_portable(portable, out);
    RUMOR_ASSERT(portable == diff);
  } else {
    RUMOR_ASSERT(out.empty());
  }
  // The portable decoder agrees with the dispatched one on every input.
  std::vector<std::uint64_t> out2;
  RUMOR_ASSERT(sketch_decode_portable(diff, elements_max, out2) == res);
  RUMOR_ASSERT(out2 == out);
  return 0;
}
