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
  w.uint_n(s.data, 6);
  w.uint_n(s.chk | ((static_cast<std::uint32_t>(s.count) & 3u) << kRibltChkBits), 3);
}

RibltSymbol riblt_read_diff(ByteReader& r, const RibltSymbol& local) {
  const std::uint64_t data = r.uint_n(6);
  const auto tail = static_cast<std::uint32_t>(r.uint_n(3));
  RibltSymbol d;
  d.data = data ^ local.data;
  d.chk = (tail & kRibltChkMask) ^ local.chk;
  d.count = static_cast<std::int32_t>(((tail >> kRibltChkBits) - static_cast<std::uint32_t>(local.count)) & 3u);
  return d;
}

// ---------------------------------------------------------------------------------------------
// RibltPrefix

RibltPrefix::RibltPrefix(std::uint32_t symbols, std::uint64_t key, std::uint32_t sketch_capacity)
    : key_(key), symbols_(symbols), sketch_(sketch_capacity) {
  RUMOR_ASSERT(symbols >= 1);
  // The logs grow to kPendingMax as writes come; not reserved, so a shard written now and
  // then does not hold 32 KiB for a few records.
}

namespace {

// Adds element i (data, chk, sign from at(i)) for i < n to the symbols [first, first + size):
// four elements at a time, because each mapping is a chain of dependent float operations and
// four independent chains overlap in the pipeline.
template <typename At>
void accumulate_lanes(std::size_t n, const At& at, std::uint64_t key, std::uint64_t first,
                      RibltSymbol* out, std::uint64_t size) {
  constexpr std::size_t kLanes = 4;
  const std::uint64_t end = first + size;
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    std::uint64_t data[kLanes];
    std::uint32_t chk[kLanes];
    std::int32_t sign[kLanes];
    for (std::size_t l = 0; l < kLanes; ++l) at(i + l, &data[l], &chk[l], &sign[l]);
    RibltMapping m[kLanes] = {RibltMapping(riblt_data_hash(data[0], key)),
                              RibltMapping(riblt_data_hash(data[1], key)),
                              RibltMapping(riblt_data_hash(data[2], key)),
                              RibltMapping(riblt_data_hash(data[3], key))};
    std::uint64_t idx[kLanes] = {0, 0, 0, 0};
    for (;;) {
      bool any = false;
      for (std::size_t l = 0; l < kLanes; ++l) {
        if (idx[l] >= end) continue;
        any = true;
        if (idx[l] >= first) {
          RibltSymbol& t = out[idx[l] - first];
          t.data ^= data[l];
          t.chk ^= chk[l];
          t.count += sign[l];
        }
        idx[l] = m[l].next();
      }
      if (!any) break;
    }
  }
  for (; i < n; ++i) {
    std::uint64_t data;
    std::uint32_t chk;
    std::int32_t sign;
    at(i, &data, &chk, &sign);
    riblt_accumulate(RibltElement{data, chk}, sign, key, first, std::span(out, size));
  }
}

}  // namespace

void riblt_accumulate_batch(std::span<const RibltElement> elements, std::int32_t sign,
                            std::uint64_t key, std::uint64_t first, std::span<RibltSymbol> out) {
  accumulate_lanes(
      elements.size(),
      [&](std::size_t i, std::uint64_t* d, std::uint32_t* c, std::int32_t* s) {
        *d = elements[i].data;
        *c = elements[i].chk;
        *s = sign;
      },
      key, first, out.data(), out.size());
}

void RibltPrefix::fold() {
  accumulate_lanes(
      pending_.size(),
      [&](std::size_t i, std::uint64_t* d, std::uint32_t* c, std::int32_t* s) {
        *d = pending_[i].data;
        *c = pending_[i].chk;
        *s = pending_[i].sign;
      },
      key_, 0, symbols_.data(), symbols_.size());
  if (sketch_.capacity() > 0) {
    // Removing and adding are one toggle in a sketch, so the sign does not matter.
    sketch_log_.clear();
    for (const Pending& p : pending_) sketch_log_.push_back(p.data);
    sketch_.toggle_batch(sketch_log_);
  }
  pending_.clear();
}

std::size_t RibltPrefix::memory_bytes() const {
  return symbols_.capacity() * sizeof(RibltSymbol) + pending_.capacity() * sizeof(Pending) +
         sketch_.capacity() * sizeof(std::uint64_t) + sketch_log_.capacity() * sizeof(std::uint64_t);
}

void RibltPrefix::clear() {
  std::fill(symbols_.begin(), symbols_.end(), RibltSymbol{});
  sketch_.clear();
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
  return (s.count & 1) == 1 && (s.data & ~kRibltDataMask) == 0 &&
         (static_cast<std::uint32_t>(riblt_data_hash(s.data, key_)) & kRibltChkMask) == s.chk;
}

void RibltDecoder::set(std::size_t i, const RibltSymbol& s_in) {
  // Counts cross the wire mod 4, so the decoder counts mod 4: a symbol whose true count
  // difference is 301 reads as 1 and comes back to 0 when its elements are peeled. A pure
  // symbol's count is 1 (+1) or 3 (-1).
  RibltSymbol s = s_in;
  s.count &= 3;
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
  if (pure(sym_[i])) queue_.push_back(static_cast<std::uint32_t>(i));
  return peel();
}

Status RibltDecoder::peel() {
  auto later = [](const auto& a, const auto& b) { return a.first > b.first; };
  while (!queue_.empty()) {
    const std::uint32_t j = queue_.back();
    queue_.pop_back();
    const RibltSymbol s = sym_[j];
    if (!pure(s)) continue;  // changed since it was queued
    // The received symbols the element maps to (ascending; the mapping is left at the first
    // index not yet received).
    RibltMapping m(riblt_data_hash(s.data, key_));
    walk_.clear();
    std::uint64_t idx = 0;
    for (; idx < received_; idx = m.next()) walk_.push_back(idx);
    // Several elements whose checksums XOR to a valid one (2^-22 for a count of 1 or 3 mod 4)
    // look pure; a real element also maps to the index it was found at, a chance one only
    // with probability 2/(j + 2). Without this check the count mod 4, which filters mixtures
    // less than a full count byte did, let ~4x more false peels through at D = 15,000.
    if (!std::binary_search(walk_.begin(), walk_.end(), std::uint64_t{j})) continue;
    if (out_.size() >= limits_.elements_max) return fail("riblt: more elements than the limit");
    const RibltElement e{s.data, s.chk};
    const std::int32_t sign = s.count == 1 ? 1 : -1;
    if (!seen_.insert(e.data).second) return fail("riblt: an element decoded twice");
    out_.push_back(Decoded{e, sign == 1});
    // Take it out of every received symbol it maps to; each may become pure.
    for (const std::uint64_t i : walk_) {
      RibltSymbol t = sym_[i];
      t.apply(e, -sign);
      set(i, t);
      if (pure(sym_[i])) queue_.push_back(static_cast<std::uint32_t>(i));
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
  // 40 indices below 1,024 (the default prefix): every one up to 12, where a small difference
  // shows, then a geometric spread (ratio ~1.17) where a large one still has residues well
  // inside an int8. 40 bytes: what the estimate costs a session that differs in one entry.
  static const auto list = [] {
    std::array<std::uint16_t, 40> a{};
    std::size_t n = 0;
    for (std::uint16_t i = 1; i <= 12; ++i) a[n++] = i;
    double x = 12;
    while (n < a.size()) {
      x *= 1.17;
      const auto i = static_cast<std::uint16_t>(std::ceil(x));
      const auto after = static_cast<std::uint16_t>(a[n - 1] + 1);
      a[n] = std::max(i, after);
      ++n;
    }
    return a;
  }();
  return list;
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
      // The residue is mod 256, and so is its mean delta p: subtract the mean's rounding mod 256
      // first, so that only the deviation has to fit an int8.
      const double mean = delta * p;
      const double rounded = std::nearbyint(mean);
      const auto wrapped = static_cast<std::int8_t>(static_cast<std::uint8_t>(
          static_cast<std::uint8_t>(residues[j]) -
          static_cast<std::uint8_t>(static_cast<std::int64_t>(rounded))));
      const double dev = static_cast<double>(wrapped) + (rounded - mean);
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
