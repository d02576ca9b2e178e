// open_transport: AF_XDP when asked for and available, io_uring when the kernel and the sandbox
// allow it, sendmmsg otherwise. The reason string is what the node logs, once, at start.
#include "io/mmsg_transport.h"
#include "io/uring_transport.h"
#include "io/xdp_transport.h"
#include "rumor/transport.h"

namespace rumor {

Result<TransportChoice> open_transport(const TransportConfig& config) {
  if (Status s = io::validate_config(config); !s) return s;
  TransportChoice choice;
  std::string xdp_failure;
  if (config.backend == Backend::kXdp) {
    auto xdp = io::XdpTransport::open(config);
    if (xdp) {
      choice.backend = "xdp";
      choice.reason = "AF_XDP available (" + (*xdp)->info().features + ")";
      choice.transport = std::move(xdp.value());
      return choice;
    }
    // A configuration that cannot work anywhere (no interface named, a port taken) is reported
    // as it is; only AF_XDP's own unavailability falls back, as io_uring's does.
    if (xdp.status().code() != Code::kUnavailable) return xdp.status();
    xdp_failure = xdp.status().message();
  }
  auto prefix = [&xdp_failure](std::string reason) {
    if (xdp_failure.empty()) return reason;
    return reason + "; not AF_XDP because " + xdp_failure;
  };
  std::string uring_failure;
  if (config.backend != Backend::kMmsg) {
    auto uring = io::UringTransport::open(config);
    if (uring) {
      choice.backend = "uring";
      choice.reason = prefix("io_uring available (" + (*uring)->info().features + ")");
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
  choice.reason = prefix(config.backend == Backend::kMmsg
                             ? "sendmmsg/recvmmsg chosen by configuration"
                             : "sendmmsg/recvmmsg because " + uring_failure);
  choice.transport = std::move(mmsg.value());
  return choice;
}

}  // namespace rumor
