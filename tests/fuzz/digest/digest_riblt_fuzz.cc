// The rateless IBLT symbol decoder on attacker-chosen symbols: a stream of wire-form symbols
// (kRibltSymbolBytes each) subtracted from a small local set, fed until it decodes, fails or
// ends. The first byte picks the decoder's bounds. Whatever the input, the decoder must end in
// one of three states without a crash, within its bounds, and a "decoded" answer must explain
// every symbol it took (checked by re-encoding).
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "digest/riblt.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::digest;
  if (size == 0) return 0;
  constexpr std::uint64_t kKey = 0x5eed;
  const RibltDecoder::Limits limits{1u + (data[0] & 0x3f) * 16u, 1u + (data[0] >> 6) * 32u};
  RibltDecoder dec(kKey, limits);
  // The local side: a few elements, so subtraction is exercised.
  std::vector<RibltElement> local;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const std::uint64_t d = (i * 0x9e3779b97f4a7c15ull) & kRibltDataMask;
    local.push_back(RibltElement{d, static_cast<std::uint32_t>(riblt_data_hash(d, kKey)) & kRibltChkMask});
  }
  const std::size_t n = (size - 1) / kRibltSymbolBytes;
  std::vector<RibltSymbol> mine(n);
  for (const auto& e : local) riblt_accumulate(e, 1, kKey, 0, mine);
  ByteReader r(std::span(data + 1, size - 1));
  std::vector<RibltSymbol> diffs;
  for (std::size_t i = 0; i < n && !dec.decoded() && !dec.failed(); ++i) {
    const RibltSymbol d = riblt_read_diff(r, mine[i]);
    RUMOR_ASSERT(r.ok());
    diffs.push_back(d);
    (void)dec.add(d);
  }
  RUMOR_ASSERT(dec.received() <= limits.symbols_max);
  RUMOR_ASSERT(dec.elements().size() <= limits.elements_max);
  if (dec.decoded()) {
    // The decoded elements re-encode to exactly the difference symbols received (counts mod
    // 4, as on the wire).
    std::vector<RibltSymbol> again(diffs.size());
    for (const auto& el : dec.elements()) riblt_accumulate(el.e, el.remote ? 1 : -1, kKey, 0, again);
    for (std::size_t i = 0; i < diffs.size(); ++i) {
      RUMOR_ASSERT(again[i].data == diffs[i].data);
      RUMOR_ASSERT(again[i].chk == diffs[i].chk);
      RUMOR_ASSERT((again[i].count & 3) == (diffs[i].count & 3));
    }
  }
  return 0;
}
