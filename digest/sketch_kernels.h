// Private to digest/sketch.cc and digest/sketch_clmul.cc: the sketch's arithmetic, written once
// over a field multiplication `Mul` and compiled twice, once with a portable multiplication and
// once (sketch_clmul.cc, built with -mpclmul) with the carry-less multiply instruction.
//
// Everything here has internal linkage (an unnamed namespace) on purpose: the two translation
// units are built with different instruction sets, so an inline function with external linkage
// instantiated in both could be merged by the linker into the PCLMUL copy and then run on a CPU
// without it. Include this header from those two files only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "digest/sketch.h"

namespace rumor::digest {
namespace {  // NOLINT: see above, internal linkage is the point

// f(x) = x^48 + r(x), r(x) = x^5 + x^3 + x^2 + 1: irreducible over GF(2) (Rabin's test,
// checked when it was chosen; tests/digest/sketch_test.cc checks a^(2^48 - 1) = 1 and inverses).
// A pentanomial, because no trinomial of degree 48 is irreducible (Swan), and the low degree of
// r keeps a reduction to two folds of shifts.
constexpr std::uint64_t kMask48 = (std::uint64_t{1} << 48) - 1;

// h(x) * r(x) for h of at most 59 bits (no bit leaves the word).
constexpr std::uint64_t times_r(std::uint64_t h) { return h ^ (h << 2) ^ (h << 3) ^ (h << 5); }

// (lo + hi * x^64) mod f for a product of two field elements (at most 95 bits).
constexpr std::uint64_t reduce95(std::uint64_t lo, std::uint64_t hi) {
  const std::uint64_t h = (lo >> 48) | (hi << 16);  // bits 48..94: 47 bits
  std::uint64_t t = times_r(h);                      // at most 52 bits
  t = (t & kMask48) ^ times_r(t >> 48);              // bits 48..51 folded once more
  return (lo & kMask48) ^ t;
}

// Portable multiplication: Horner over the 4-bit digits of b, with a table of a * (0..15).
struct PortableMul {
  static std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
    std::uint64_t t[16];
    t[0] = 0;
    t[1] = a;
    for (int i = 2; i < 16; i += 2) {
      const std::uint64_t h = t[i / 2];  // t[i] = t[i/2] * x
      t[i] = ((h << 1) & kMask48) ^ ((h >> 47) != 0 ? 0x2Du : 0u);
      t[i + 1] = t[i] ^ a;
    }
    std::uint64_t acc = 0;
    for (int j = 44; j >= 0; j -= 4) {
      const std::uint64_t top = acc >> 44;  // acc * x^4: the 4 bits that leave 48 come back as r
      acc = ((acc << 4) & kMask48) ^ times_r(top) ^ t[(b >> j) & 15];
    }
    return acc;
  }
};

// ---- maintenance: s_k ^= x^(2k+1) for every element, four power chains at a time ----
template <class M>
void toggle_batch_impl(std::uint64_t* s, std::uint32_t c, const std::uint64_t* x, std::size_t n) {
  constexpr std::size_t kLanes = 4;  // independent chains overlap in the multiplier
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    std::uint64_t p[kLanes];
    std::uint64_t sq[kLanes];
    for (std::size_t l = 0; l < kLanes; ++l) {
      p[l] = x[i + l];
      sq[l] = M::mul(p[l], p[l]);
    }
    s[0] ^= p[0] ^ p[1] ^ p[2] ^ p[3];
    for (std::uint32_t k = 1; k < c; ++k) {
      for (std::size_t l = 0; l < kLanes; ++l) p[l] = M::mul(p[l], sq[l]);
      s[k] ^= p[0] ^ p[1] ^ p[2] ^ p[3];
    }
  }
  for (; i < n; ++i) {
    std::uint64_t p = x[i];
    const std::uint64_t sq = M::mul(p, p);
    s[0] ^= p;
    for (std::uint32_t k = 1; k < c; ++k) {
      p = M::mul(p, sq);
      s[k] ^= p;
    }
  }
}

// ---- decoding ----
template <class M>
std::uint64_t inv_impl(std::uint64_t a) {
  // a^(2^48 - 2) = a^-1: square-and-multiply over the exponent's 47 ones and final zero.
  std::uint64_t r = a;
  for (int i = 0; i < 46; ++i) r = M::mul(M::mul(r, r), a);
  return M::mul(r, r);
}

using Poly = std::vector<std::uint64_t>;  // coefficients, lowest degree first; no trailing 0

inline void trim(Poly& p) {
  while (!p.empty() && p.back() == 0) p.pop_back();
}

// a mod g for a monic g of degree >= 1.
template <class M>
void mod_monic(Poly& a, const Poly& g) {
  const std::size_t dg = g.size() - 1;
  for (std::size_t i = a.size(); i-- > dg;) {
    const std::uint64_t c = a[i];
    if (c == 0) continue;
    for (std::size_t j = 0; j < dg; ++j) a[i - dg + j] ^= M::mul(c, g[j]);
    a[i] = 0;
  }
  trim(a);
}

template <class M>
void make_monic(Poly& p) {
  const std::uint64_t li = inv_impl<M>(p.back());
  for (auto& c : p) c = M::mul(c, li);
}

// a^2 mod g: squaring is linear in characteristic 2, so the square of a sum is the sum of the
// squares of its terms.
template <class M>
Poly sqr_mod(const Poly& a, const Poly& g) {
  Poly r(a.empty() ? 0 : 2 * a.size() - 1, 0);
  for (std::size_t i = 0; i < a.size(); ++i) r[2 * i] = M::mul(a[i], a[i]);
  mod_monic<M>(r, g);
  return r;
}

// The monic gcd of a and b (b monic, nonzero).
template <class M>
Poly gcd_monic(Poly a, Poly b) {
  trim(a);
  while (!a.empty()) {
    make_monic<M>(a);
    mod_monic<M>(b, a);
    std::swap(a, b);
  }
  return b;
}

// q = a / b for monic b dividing a exactly.
template <class M>
Poly div_exact(Poly a, const Poly& b) {
  const std::size_t db = b.size() - 1;
  Poly q(a.size() - db, 0);
  for (std::size_t i = a.size(); i-- > db;) {
    const std::uint64_t c = a[i];
    q[i - db] = c;
    if (c == 0) continue;
    for (std::size_t j = 0; j < db; ++j) a[i - db + j] ^= M::mul(c, b[j]);
    a[i] = 0;
  }
  return q;
}

// Does g (monic, degree >= 1) split into distinct linear factors over GF(2^48)? Exactly when
// x^(2^48) = x mod g: x^(2^48) - x is the product of (x - a) over every field element, once each.
template <class M>
bool splits_distinct(const Poly& g) {
  Poly t{0, 1};
  mod_monic<M>(t, g);
  for (int i = 0; i < 48; ++i) t = sqr_mod<M>(t, g);
  Poly x{0, 1};
  mod_monic<M>(x, g);
  return t == x;
}

// The roots of g, which splits into distinct linear factors. Berlekamp's trace algorithm:
// gcd(g, Tr(b x)) collects the roots r with Tr(b r) = 0. For two distinct roots r, r' some basis
// element b = 2^j has Tr(b (r + r')) = 1 (the trace form is nondegenerate), so trying the 48
// basis elements in turn always separates them: bounded, and deterministic.
template <class M>
bool roots_impl(const Poly& g, std::vector<std::uint64_t>& out) {
  std::vector<Poly> todo{g};
  std::vector<int> from{0};  // the basis element to try first for each pending factor
  while (!todo.empty()) {
    Poly f = std::move(todo.back());
    const int j0 = from.back();
    todo.pop_back();
    from.pop_back();
    if (f.size() == 2) {  // x + r (f is monic)
      out.push_back(f[0]);
      continue;
    }
    bool split = false;
    for (int j = j0; j < 48 && !split; ++j) {
      Poly t{0, std::uint64_t{1} << j};
      Poly acc = t;
      for (int i = 1; i < 48; ++i) {
        t = sqr_mod<M>(t, f);
        if (acc.size() < t.size()) acc.resize(t.size(), 0);
        for (std::size_t k = 0; k < t.size(); ++k) acc[k] ^= t[k];
      }
      trim(acc);
      if (acc.empty()) continue;  // every root has trace 0 under this b
      Poly h = gcd_monic<M>(acc, f);
      if (h.size() <= 1 || h.size() == f.size()) continue;
      Poly q = div_exact<M>(f, h);
      // b_0..b_j give every root of h the same trace (and of q): none of them can split h or
      // q, so their search resumes at j + 1.
      todo.push_back(std::move(h));
      from.push_back(j + 1);
      todo.push_back(std::move(q));
      from.push_back(j + 1);
      split = true;
    }
    if (!split) return false;  // impossible for a polynomial that splits_distinct() accepted
  }
  return true;
}

// The power sums of `elements`: the c odd syndromes of their sketch.
template <class M>
std::vector<std::uint64_t> syndromes_of(std::span<const std::uint64_t> elements, std::uint32_t c) {
  std::vector<std::uint64_t> s(c, 0);
  toggle_batch_impl<M>(s.data(), c, elements.data(), elements.size());
  return s;
}

// Decoding: Berlekamp-Massey finds the shortest linear recurrence of the power sums
// S_1..S_2c (S_2k = S_k^2), whose connection polynomial reversed has the elements as roots.
template <class M>
SketchDecodeResult decode_impl(std::span<const std::uint64_t> syn, std::uint32_t elements_max,
                               std::vector<std::uint64_t>& out) {
  out.clear();
  const std::size_t c = syn.size();
  std::vector<std::uint64_t> S(2 * c + 1, 0);  // S[1..2c]
  for (std::size_t k = 1; k <= c; ++k) S[2 * k - 1] = syn[k - 1];
  for (std::size_t k = 1; 2 * k <= 2 * c; ++k) S[2 * k] = M::mul(S[k], S[k]);

  // Berlekamp-Massey over GF(2^48) (subtraction is XOR).
  Poly C{1};
  Poly B{1};
  std::size_t L = 0;
  std::size_t m = 1;
  std::uint64_t b = 1;
  for (std::size_t n = 0; n < 2 * c; ++n) {
    std::uint64_t d = S[n + 1];
    for (std::size_t i = 1; i <= L && i < C.size(); ++i) d ^= M::mul(C[i], S[n + 1 - i]);
    if (d == 0) {
      ++m;
      continue;
    }
    const std::uint64_t coef = M::mul(d, inv_impl<M>(b));
    const Poly T = C;
    if (C.size() < B.size() + m) C.resize(B.size() + m, 0);
    for (std::size_t i = 0; i < B.size(); ++i) C[i + m] ^= M::mul(coef, B[i]);
    if (2 * L <= n) {
      L = n + 1 - L;
      B = T;
      b = d;
      m = 1;
    } else {
      ++m;
    }
  }
  trim(C);
  if (L == 0) return SketchDecodeResult::kDecoded;  // every syndrome is zero: no difference
  if (L > elements_max) return SketchDecodeResult::kTooMany;
  // A connection polynomial of degree below L has a root at 0: no set of L elements.
  if (C.size() != L + 1) return SketchDecodeResult::kTooMany;
  Poly g(L + 1);
  for (std::size_t i = 0; i <= L; ++i) g[L - i] = C[i];  // monic: C[0] = 1
  if (!splits_distinct<M>(g)) return SketchDecodeResult::kTooMany;
  if (!roots_impl<M>(g, out) || out.size() != L) {
    out.clear();
    return SketchDecodeResult::kTooMany;
  }
  // The elements must give back every syndrome received, not only the 2L the recurrence used.
  const std::vector<std::uint64_t> again = syndromes_of<M>(out, static_cast<std::uint32_t>(c));
  if (!std::equal(again.begin(), again.end(), syn.begin())) {
    out.clear();
    return SketchDecodeResult::kTooMany;
  }
  std::sort(out.begin(), out.end());
  return SketchDecodeResult::kDecoded;
}

}  // namespace
}  // namespace rumor::digest
