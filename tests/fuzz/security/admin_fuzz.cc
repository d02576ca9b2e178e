// Fuzz target: the admin protocol decoders (tools/admin_protocol) that an agent runs on every
// byte a local client sends, and that the client runs on the agent's answers. A frame that
// decodes must re-encode to the same bytes (the oracle), and decode to the same message again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tools/admin_protocol.h"

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::tools;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  Message m;
  auto r = decode_request(in, m);
  if (r && *r > 0) {
    std::string again;
    encode_request(m, again);
    check(again == in.substr(0, *r));
    Message m2;
    auto r2 = decode_request(again, m2);
    check(r2 && *r2 == again.size() && m2.fields == m.fields && m2.kind == m.kind);
  }
  Message resp;
  auto rr = decode_response(in, resp);
  if (rr && *rr > 0) {
    std::string again;
    encode_response(resp, again);
    check(again == in.substr(0, *rr));
  }
  return 0;
}
