#include "io/steering.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "io/udp_base.h"

namespace rumor::io {

Status attach_reuseport_steering(int socket_fd, std::uint32_t sockets) {
  if (sockets == 0) return Status::error(Code::kInvalidArgument, "steering: zero sockets");
  // For reuseport programs the packet starts at the UDP payload. Absolute loads read network
  // byte order, hence the big-endian shard id; a load past the end returns 0 (socket 0).
  sock_filter code[] = {
      {BPF_LD | BPF_H | BPF_ABS, 0, 0, static_cast<std::uint32_t>(kShardIdOffset)},
      {BPF_ALU | BPF_MOD | BPF_K, 0, 0, sockets},
      {BPF_RET | BPF_A, 0, 0, 0},
  };
  static_assert(kShardIdBytes == 2, "the program loads a half-word");
  sock_fprog prog{static_cast<unsigned short>(sizeof(code) / sizeof(code[0])), code};
  if (setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
    const int err = errno;
    return Status::error(Code::kUnavailable, "SO_ATTACH_REUSEPORT_CBPF: " + errno_text(err));
  }
  return Status::ok();
}

}  // namespace rumor::io
