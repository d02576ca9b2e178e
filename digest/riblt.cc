#include "digest/riblt.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "base/assert.h"

namespace rumor::digest {

void riblt_accumulate(const RibltElement& e, std::int32_t sign, std::uint64_t key,
                      std::uint64_t first, std::span<RibltSymbol> out) {
  const std::uint64_t end = first + out.size();
  RibltMapping m(riblt_data_hash(e.data, key));
  for (std::uint64_t i = 0; i < end; i = m.next()) {
    if (i >= first) out[i - first].apply(e, sign);
  }
}

void put_riblt_symbol(ByteWriter& w, const RibltSymbol& s) {
  RUMOR_ASSERT((s.data & ~kRibltDataMask) == 0);
  RUMOR_ASSERT((s.chk & ~kRibltChkMask) == 0);
  w.u8(static_cast<std::uint8_t>(s.count));
  w.uint_n(s.data, 6);
  w.uint_n(s.chk, 3);
}

RibltSymbol riblt_read_diff(ByteReader& r, const RibltSymbol& local) {
  const std::uint8_t c = r.u8();
  const std::uint64_t data = r.uint_n(6);
  const auto chk = static_cast<std::uint32_t>(r.uint_n(3));
  RibltSymbol d;
  d.data = data ^ local.data;
  d.chk = chk ^ local.chk;
  d.count = static_cast<std::int8_t>(static_cast<std::uint8_t>(c - static_cast<std::uint8_t>(local.count)));
  return d;
}

// ---------------------------------------------------------------------------------------------
// RibltPrefix

RibltPrefix::RibltPrefix(std::uint32_t symbols, std::uint64_t key)
    : key_(key), symbols_(symbols) {
  RUMOR_ASSERT(symbols >= 1);
  pending_.reserve(kPendingMax);
}

void RibltPrefix::fold() {
  const std::uint64_t k = symbols_.size();
  RibltSymbol* s = symbols_.data();
  // Four elements at a time: each mapping is a chain of dependent float operations, and four
  // independent chains overlap in the pipeline.
  constexpr std::size_t kLanes = 4;
  std::size_t i = 0;
  for (; i + kLanes <= pending_.size(); i += kLanes) {
    const Pending* p = &pending_[i];
    RibltMapping m[kLanes] = {RibltMapping(riblt_data_hash(p[0].data, key_)),
                              RibltMapping(riblt_data_hash(p[1].data, key_)),
                              RibltMapping(riblt_data_hash(p[2].data, key_)),
                              RibltMapping(riblt_data_hash(p[3].data, key_))};
    std::uint64_t at[kLanes] = {0, 0, 0, 0};
    for (;;) {
      bool any = false;
      for (std::size_t l = 0; l < kLanes; ++l) {
        if (at[l] >= k) continue;
        any = true;
        RibltSymbol& t = s[at[l]];
        t.data ^= p[l].data;
        t.chk ^= p[l].chk;
        t.count += p[l].sign;
        at[l] = m[l].next();
      }
      if (!any) break;
    }
  }
  for (; i < pending_.size(); ++i) {
    const Pending& a = pending_[i];
    riblt_accumulate(RibltElement{a.data, a.chk}, a.sign, key_, 0, symbols_);
  }
  pending_.clear();
}

std::size_t RibltPrefix::memory_bytes() const {
  return symbols_.capacity() * sizeof(RibltSymbol) + pending_.capacity() * sizeof(Pending);
}

void RibltPrefix::clear() {
  std::fill(symbols_.begin(), symbols_.end(), RibltSymbol{});
  pending_.clear();
}

// ---------------------------------------------------------------------------------------------
// RibltDecoder

RibltDecoder::RibltDecoder(std::uint64_t key, const Limits& limits) : key_(key), limits_(limits) {}

Status RibltDecoder::fail(const char* why) {
  failed_ = Status::error(Code::kMalformed, why);
  return failed_;
}

bool RibltDecoder::pure(const RibltSymbol& s) const {
  return (s.count == 1 || s.count == -1) && (s.data & ~kRibltDataMask) == 0 &&
         (static_cast<std::uint32_t>(riblt_data_hash(s.data, key_)) & kRibltChkMask) == s.chk;
}

void RibltDecoder::set(std::size_t i, const RibltSymbol& s) {
  const bool was = !sym_[i].zero();
  sym_[i] = s;
  const bool now = !s.zero();
  nonzero_ += now;
  nonzero_ -= was;
}

Status RibltDecoder::add(const RibltSymbol& diff) {
  if (!failed_) return failed_;
  if (received_ >= limits_.symbols_max) return fail("riblt: more symbols than the limit");
  const std::uint64_t i = received_;
  RibltSymbol s = diff;
  // Elements already decoded that map here are taken out first.
  auto later = [](const auto& a, const auto& b) { return a.first > b.first; };
  while (!heap_.empty() && heap_.front().first == i) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    const std::uint32_t li = heap_.back().second;
    heap_.pop_back();
    Live& l = live_[li];
    s.apply(l.e, -l.sign);
    if (l.map.next() < kRibltIndexNever) {
      heap_.emplace_back(l.map.index(), li);
      std::push_heap(heap_.begin(), heap_.end(), later);
    }
  }
  sym_.push_back(RibltSymbol{});
  ++received_;
  set(i, s);
  if (pure(s)) queue_.push_back(static_cast<std::uint32_t>(i));
  return peel();
}

Status RibltDecoder::peel() {
  auto later = [](const auto& a, const auto& b) { return a.first > b.first; };
  while (!queue_.empty()) {
    const std::uint32_t j = queue_.back();
    queue_.pop_back();
    const RibltSymbol s = sym_[j];
    if (!pure(s)) continue;  // changed since it was queued
    if (out_.size() >= limits_.elements_max) return fail("riblt: more elements than the limit");
    const RibltElement e{s.data, s.chk};
    const std::int32_t sign = s.count;
    out_.push_back(Decoded{e, sign == 1});
    // Take it out of every received symbol it maps to; each may become pure.
    RibltMapping m(riblt_data_hash(e.data, key_));
    std::uint64_t idx = 0;
    for (; idx < received_; idx = m.next()) {
      RibltSymbol t = sym_[idx];
      t.apply(e, -sign);
      set(idx, t);
      if (pure(t)) queue_.push_back(static_cast<std::uint32_t>(idx));
    }
    if (idx < kRibltIndexNever) {
      live_.push_back(Live{e, sign, m});
      heap_.emplace_back(idx, static_cast<std::uint32_t>(live_.size() - 1));
      std::push_heap(heap_.begin(), heap_.end(), later);
    }
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Estimating the difference

std::span<const std::uint16_t> riblt_estimate_indices() {
  static const auto list = [] {
    std::array<std::uint16_t, 64> a{};
    std::size_t n = 0;
    for (std::uint16_t i = 1; i <= 12; ++i) a[n++] = i;
    double x = 12;
    while (n < a.size()) {
      x *= 1.25;
      const auto i = static_cast<std::uint16_t>(std::ceil(x));
      if (x > 60000) break;
      a[n++] = i;
    }
    return std::pair{a, n};
  }();
  return std::span<const std::uint16_t>(list.first.data(), list.second);
}

double riblt_estimate(std::span<const std::int8_t> residues, std::int64_t delta0,
                      std::uint32_t prefix) {
  const auto idx = riblt_estimate_indices();
  const std::size_t n = std::min(idx.size(), residues.size());
  const double delta = static_cast<double>(delta0);
  // Count difference at index i: mean delta p_i, variance D p_i (1 - p_i), so each residue
  // gives an unbiased estimate of D; combine them with inverse-variance weights, using only
  // those whose spread is well inside the int8 residue (no wrap).
  auto p_of = [](double i) { return 2.0 / (i + 2.0); };
  double est = std::max(1.0, std::abs(delta));
  for (int round = 0; round < 6; ++round) {
    double num = 0, den = 0;
    for (std::size_t j = 0; j < n; ++j) {
      if (idx[j] >= prefix) continue;
      const double p = p_of(idx[j]);
      const double q = p * (1 - p);
      // The first round trusts only sparse indices (no wrap for D up to ~10^5).
      if (round == 0 ? p > 0.01 : est * q > 900) continue;
      const double dev = static_cast<double>(residues[j]) - delta * p;
      const double e = dev * dev / q;
      const double var = 2 * est * est + est / q;
      num += e / var;
      den += 1 / var;
    }
    if (den == 0) continue;
    est = std::max({1.0, std::abs(delta), num / den});
  }
  return est;
}

}  // namespace rumor::digest
