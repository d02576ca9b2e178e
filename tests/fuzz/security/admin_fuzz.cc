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


// Decodes `in` as a request or a response; what decodes must re-encode to the same bytes.
template <typename Decode, typename Encode>
void round_trip(std::string_view in, Decode decode, Encode encode) {
  rumor::tools::Message m;
  auto r = decode(in, m);
  if (!r || *r == 0) return;
  std::string again;
  encode(m, again);
  check(again == in.substr(0, *r));
  rumor::tools::Message m2;
  auto r2 = decode(again, m2);
  check(r2 && *r2 == again.size() && m2.fields == m.fields && m2.kind == m.kind &&
        m2.columns == m.columns);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::tools;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  round_trip(in, decode_request, encode_request);
  round_trip(in, decode_response, encode_response);
  return 0;
}
