// Fuzz target: arbitrary bytes as a datagram to a running node. Exercises the header and every
// message decoder (engine/wire), membership, merges and the anti-entropy responder behind them:
// none may crash, assert or grow without bound on hostile input. Under non-fuzz presets the
// committed corpus (tests/fuzz/corpus/packet) replays through this as a regression test.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/clock.h"
#include "rumor/node.h"

namespace {

struct DiscardSink final : rumor::PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::span<std::byte> buffer() override { return buf; }
  void commit(const rumor::Address&, std::size_t) override {}
};

struct Target {
  rumor::ManualTimeSource time{1'764'000'000'000};
  DiscardSink sink;
  std::unique_ptr<rumor::Node> node;
  Target() {
    rumor::NodeConfig cfg = rumor::NodeConfig::local();
    cfg.name = "fuzz-target";
    cfg.advertise = rumor::Address::ipv4(0x7f000001, 7946);
    node = std::move(rumor::Node::create(cfg, time)).value();
    node->start(sink);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Target t;
  static const rumor::Address from = rumor::Address::ipv4(0x7f000002, 7946);
  t.node->receive(from, std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size),
                  t.sink);
  t.time.advance(7);
  t.node->tick(t.sink);
  t.node->dispatch_events();
  return 0;
}
