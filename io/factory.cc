// open_transport: io_uring when the kernel and the sandbox allow it, sendmmsg otherwise. The
// reason string is what the node logs, once, at start.
#include "io/mmsg_transport.h"
#include "io/uring_transport.h"
#include "rumor/transport.h"

namespace rumor {

Result<TransportChoice> open_transport(const TransportConfig& config) {
  if (Status s = io::validate_config(config); !s) return s;
  TransportChoice choice;
  std::string uring_failure;
  if (config.backend != Backend::kMmsg) {
    auto uring = io::UringTransport::open(config);
    if (uring) {
      choice.backend = "uring";
      choice.reason = "io_uring available (" + (*uring)->info().features + ")";
      choice.transport = std::move(uring.value());
      return choice;
    }
    // A socket-level failure (the address is taken, say) would fail the fallback too: report it
    // as it is. Only io_uring's own unavailability falls back.
    if (config.backend == Backend::kUring || uring.status().code() != Code::kUnavailable) {
      return uring.status();
    }
    uring_failure = uring.status().message();
  }
  auto mmsg = io::MmsgTransport::open(config);
  if (!mmsg) return mmsg.status();
  choice.backend = "mmsg";
  choice.reason = config.backend == Backend::kMmsg
                      ? "sendmmsg/recvmmsg chosen by configuration"
                      : "sendmmsg/recvmmsg because " + uring_failure;
  choice.transport = std::move(mmsg.value());
  return choice;
}

}  // namespace rumor
