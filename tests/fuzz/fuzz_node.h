// A running node for fuzz targets: it takes datagrams and sends into a sink that discards.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "base/clock.h"
#include "rumor/driver.h"
#include "tests/support/discard_sink.h"

namespace rumor::fuzz {

using testing::DiscardSink;

// A started node named fuzz-target at 127.0.0.1:7946, on a manual clock; `cfg` sets the rest.
struct FuzzNode {
  explicit FuzzNode(NodeConfig cfg) {
    cfg.name = "fuzz-target";
    cfg.advertise = Address::ipv4(0x7f000001, 7946);
    node = std::move(Node::create(cfg, time)).value();
    NodeDriver::of(*node).start(sink);
  }
  // One datagram from a fixed peer, then a tick 7 ms later and the callbacks.
  void feed(std::span<const std::byte> datagram) {
    static const Address from = Address::ipv4(0x7f000002, 7946);
    NodeDriver& driver = NodeDriver::of(*node);
    driver.receive(from, datagram, sink);
    time.advance(7);
    driver.tick(sink);
    driver.dispatch_events();
  }
  ManualTimeSource time{1'764'000'000'000};
  DiscardSink sink;
  std::unique_ptr<Node> node;
};

}  // namespace rumor::fuzz
