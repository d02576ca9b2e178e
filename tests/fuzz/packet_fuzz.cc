// Fuzz target: arbitrary bytes as a datagram to a running node. Exercises the header and every
// message decoder (engine/wire), membership, merges and the anti-entropy responder behind them:
// none may crash, assert or grow without bound on hostile input. Under non-fuzz presets the
// committed corpus (tests/fuzz/corpus/packet) replays through this as a regression test.
#include <cstddef>
#include <cstdint>
#include <span>

#include "tests/fuzz/fuzz_node.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static rumor::fuzz::FuzzNode t(rumor::NodeConfig::local());
  t.feed(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  return 0;
}
