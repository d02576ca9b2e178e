// A PacketSink that drops what a node sends: for tests and benchmarks that drive one node with
// no peers (include/rumor/driver.h).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "rumor/driver.h"

namespace rumor::testing {

struct DiscardSink final : PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(2048);
  std::span<std::byte> buffer() override { return buf; }
  void commit(const Address&, std::size_t) override {}
};

}  // namespace rumor::testing
