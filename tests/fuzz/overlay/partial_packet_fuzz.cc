// Fuzz target: arbitrary bytes as a datagram to a running node in partial-view mode
// (membership = partial). Exercises the header, the HyParView and Plumtree decoders
// (engine/wire/overlay.h), the views and the tree behind them, and the merges of payloads: none
// may crash, assert or grow without bound on hostile input. Under non-fuzz presets the
// committed corpus (tests/fuzz/corpus/partial_packet_fuzz) replays as a regression test.
#include <cstddef>
#include <cstdint>
#include <span>

#include "tests/fuzz/fuzz_node.h"

namespace {
rumor::NodeConfig partial_config() {
  rumor::NodeConfig c = rumor::NodeConfig::local();
  c.membership = rumor::Membership::kPartial;
  c.expected_nodes = 64;
  return c;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static rumor::fuzz::FuzzNode t(partial_config());
  t.feed(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
  return 0;
}
