// Steering datagrams to the core that owns their shard (docs/agent.md "Threading model").
//
// Each core has its own socket on the node's port (SO_REUSEPORT). Every rumor packet names its
// target virtual shard at kShardIdOffset (rumor/transport.h), and shard s belongs to core
// s % cores. attach_reuseport_steering() installs a classic BPF program on the port's reuseport
// group that reads the two shard bytes and returns shard % sockets, the index of the socket to
// deliver to. Sockets are indexed in the order they joined the group, so open them in core
// order (and note that closing one moves the last socket into its slot). Datagrams too short to
// carry a shard id go to socket 0.
//
// Where the program cannot be attached (no permission, another program on the port, a backend
// without sockets), the node itself hands a misdirected datagram to its owner core over its
// cross-core links (docs/transport.md "Steering to cores").
#pragma once

#include <cstdint>

#include "rumor/status.h"
#include "rumor/transport.h"

namespace rumor::io {

// The core (socket index) that owns `shard` among `cores`: the same rule the BPF program runs.
inline std::uint32_t owner_core(std::uint16_t shard, std::uint32_t cores) {
  return static_cast<std::uint32_t>(shard) % cores;
}

// Installs the shard-steering program on the reuseport group of `socket_fd` (any socket of the
// group). kUnavailable when the kernel refuses; the node then hands misdirected datagrams to
// their owner core itself.
Status attach_reuseport_steering(int socket_fd, std::uint32_t sockets);

}  // namespace rumor::io
