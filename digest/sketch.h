// A BCH set sketch (PinSketch: Dodis, Ostrovsky, Reyzin, Smith, "Fuzzy extractors", the
// syndrome construction; the form minisketch made practical) over GF(2^48). Pure: no I/O, clock
// or threads.
//
// The sketch of a set of nonzero 48-bit elements, of capacity c, is the c odd power sums
// s_k = sum over the set of x^(2k-1) (k = 1..c) in GF(2^48): c field elements, 6 bytes each.
// Adding and removing an element are the same operation (XOR of its powers), the sketch of a
// union of disjoint sets is the XOR of their sketches, and the XOR of two sides' sketches is the
// sketch of their symmetric difference. A capacity-c sketch's first c' syndromes are the
// capacity-c' sketch, so one kept sketch serves every smaller capacity.
//
// From a difference sketch of capacity c, sketch_decode() recovers ANY symmetric difference of
// at most c elements, deterministically (no peeling tail): Berlekamp-Massey over the power sums,
// then the roots of the locator (Berlekamp's trace splitting). A difference larger than what the
// caller accepts is detected: a connection polynomial longer than `elements_max`, one that does
// not split into distinct roots, or roots that do not give back every syndrome. Passing
// elements_max = c - v keeps v syndromes for that last check alone, so a larger difference is
// mistaken for a smaller one with probability about 2^(-48 v).
//
// The element 0 is invisible (every power of 0 is 0); callers that sketch 48-bit hashes accept
// the 2^-48 chance per element that one is 0.
//
// The field multiplication uses the carry-less multiply instruction (PCLMULQDQ) when the CPU has
// it and a portable table-driven one otherwise; both give the same results.
//
// Thread-safety: none; values owned by one thread. The free functions are reentrant.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "digest/codec.h"

namespace rumor::digest {

inline constexpr std::uint32_t kSketchFieldBits = 48;
inline constexpr std::uint64_t kSketchElementMask = (std::uint64_t{1} << kSketchFieldBits) - 1;
inline constexpr std::size_t kSketchSyndromeBytes = 6;
static_assert(8 * kSketchSyndromeBytes == kSketchFieldBits);
// The largest capacity the decoder accepts: it bounds a decoding to O(c^2 * 48 * log c) field
// multiplications (a few ms at 64) whatever the input.
inline constexpr std::uint32_t kSketchCapacityMax = 64;

namespace gf48 {
// Multiplication and inverse in GF(2^48) = GF(2)[x] / (x^48 + x^5 + x^3 + x^2 + 1); elements are
// the low 48 bits of a word. mul() picks the CPU's carry-less multiply when it has one.
std::uint64_t mul(std::uint64_t a, std::uint64_t b);
std::uint64_t mul_portable(std::uint64_t a, std::uint64_t b);
std::uint64_t inv(std::uint64_t a);  // a != 0
// Does this CPU run the PCLMULQDQ path? (false on other architectures, or when the build lacks it)
bool clmul_available();
}  // namespace gf48

class Sketch {
 public:
  explicit Sketch(std::uint32_t capacity = 0) : s_(capacity, 0) {}
  std::uint32_t capacity() const { return static_cast<std::uint32_t>(s_.size()); }
  // The odd power sums s_1, s_3, ..., s_(2c-1).
  std::span<const std::uint64_t> syndromes() const { return s_; }

  // Adds an element that is absent, or removes one that is present (both are XOR). Only the
  // low 48 bits are used.
  void toggle(std::uint64_t element) { toggle_batch(std::span(&element, 1)); }
  // The same for many elements (four power chains at a time: faster per element).
  void toggle_batch(std::span<const std::uint64_t> elements);
  // XORs the first min(capacity(), other.size()) syndromes of another sketch into this one.
  void merge(std::span<const std::uint64_t> other);
  void clear() { std::fill(s_.begin(), s_.end(), 0); }
  friend bool operator==(const Sketch&, const Sketch&) = default;

 private:
  std::vector<std::uint64_t> s_;
};

// Wire form: each syndrome as 6 bytes, little-endian. Every 6-byte value is a field element, so
// reading cannot meet an invalid syndrome; it fails only when the bytes run out.
void put_sketch(ByteWriter& w, std::span<const std::uint64_t> syndromes);
// Reads n syndromes, XORing them into out[0..n) (out.size() >= n): the caller passes its own
// syndromes to get the difference.
void read_sketch_xor(ByteReader& r, std::span<std::uint64_t> out);

enum class SketchDecodeResult : std::uint8_t {
  kDecoded,   // out holds the symmetric difference, sorted
  kTooMany,   // the difference is larger than elements_max (or the sketch is no set's sketch)
  kInvalid,   // capacity above kSketchCapacityMax, elements_max above the capacity, or a
              // syndrome with bits above 48: nothing was decoded
};

// Decodes a difference sketch (the XOR of two sides' syndromes, capacity c = size()). Succeeds
// when the difference has at most elements_max (<= c) elements; see the header comment for why
// a caller keeps elements_max below c. Bounded: O(c^2 * 48 * log c) multiplications, O(c^2)
// memory.
SketchDecodeResult sketch_decode(std::span<const std::uint64_t> syndromes,
                                 std::uint32_t elements_max, std::vector<std::uint64_t>& out);

// The same on the portable multiplication alone (tests compare the two paths).
SketchDecodeResult sketch_decode_portable(std::span<const std::uint64_t> syndromes,
                                          std::uint32_t elements_max,
                                          std::vector<std::uint64_t>& out);
void sketch_toggle_batch_portable(std::span<std::uint64_t> syndromes,
                                  std::span<const std::uint64_t> elements);

}  // namespace rumor::digest
