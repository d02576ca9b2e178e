// Encoding and bounds-checked decoding of admin frames (tools/admin_protocol.h).
#include "tools/admin_protocol.h"

#include <cstring>

namespace rumor::tools {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kGet: return "get";
    case Op::kSet: return "set";
    case Op::kDel: return "del";
    case Op::kKeys: return "keys";
    case Op::kMembers: return "members";
    case Op::kStats: return "stats";
    case Op::kWatch: return "watch";
    case Op::kInfo: return "info";
    case Op::kKeyring: return "keyring";
    case Op::kTags: return "tags";
    case Op::kJoin: return "join";
    case Op::kLeave: return "leave";
    case Op::kReload: return "reload";
  }
  return "unknown";
}

Message make_request(Op op, std::vector<std::string> fields) {
  Message m;
  m.kind = static_cast<std::uint8_t>(op);
  m.fields = std::move(fields);
  return m;
}

Message make_response(std::uint16_t columns, std::vector<std::string> fields) {
  Message m;
  m.kind = static_cast<std::uint8_t>(Code::kOk);
  m.columns = columns;
  m.fields = std::move(fields);
  return m;
}

Message make_error(const Status& status) {
  Message m;
  m.kind = static_cast<std::uint8_t>(status.code());
  m.columns = 1;
  m.fields.push_back(status.message());
  return m;
}

namespace {

void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

std::uint32_t get_u32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) |
         (std::uint32_t{u[2]} << 8) | std::uint32_t{u[3]};
}

void encode(const Message& m, bool response, std::string& out) {
  const std::size_t start = out.size();
  put_u32(out, 0);  // length, patched below
  out.push_back(static_cast<char>(m.version));
  out.push_back(static_cast<char>(m.kind));
  if (response) {
    out.push_back(static_cast<char>(m.columns >> 8));
    out.push_back(static_cast<char>(m.columns));
  }
  put_u32(out, static_cast<std::uint32_t>(m.fields.size()));
  for (const std::string& f : m.fields) {
    put_u32(out, static_cast<std::uint32_t>(f.size()));
    out.append(f);
  }
  const auto len = static_cast<std::uint32_t>(out.size() - start - kFrameHeaderBytes);
  char b[4] = {static_cast<char>(len >> 24), static_cast<char>(len >> 16),
               static_cast<char>(len >> 8), static_cast<char>(len)};
  std::memcpy(out.data() + start, b, 4);
}

Result<std::size_t> decode(std::string_view in, bool response, std::uint32_t max, Message& m) {
  if (in.size() < kFrameHeaderBytes) return std::size_t{0};
  const std::uint32_t len = get_u32(in.data());
  if (len == 0 || len > max) {
    return Status::error(Code::kTooLarge, "admin frame of " + std::to_string(len) +
                                              " bytes (limit " + std::to_string(max) + ")");
  }
  if (in.size() - kFrameHeaderBytes < len) return std::size_t{0};
  std::string_view body = in.substr(kFrameHeaderBytes, len);
  auto malformed = [](const char* what) {
    return Status::error(Code::kMalformed, std::string("admin frame: ") + what);
  };
  const std::size_t head = response ? 4 : 2;
  if (body.size() < head + 4) return malformed("truncated header");
  m = Message();
  m.version = static_cast<std::uint8_t>(body[0]);
  if (m.version != kAdminProtocolVersion) {
    return Status::error(Code::kMalformed,
                         "admin protocol version " + std::to_string(m.version) +
                             " (this build speaks " + std::to_string(kAdminProtocolVersion) +
                             "): client and agent are different releases");
  }
  m.kind = static_cast<std::uint8_t>(body[1]);
  if (response) {
    m.columns = static_cast<std::uint16_t>((static_cast<unsigned char>(body[2]) << 8) |
                                           static_cast<unsigned char>(body[3]));
  }
  std::size_t pos = head;
  const std::uint32_t count = get_u32(body.data() + pos);
  pos += 4;
  // Every field takes at least its 4-byte length, which bounds count by the frame's size.
  if (count > kFieldsMax || count > (body.size() - pos) / 4) return malformed("field count");
  m.fields.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    if (body.size() - pos < 4) return malformed("truncated field length");
    const std::uint32_t flen = get_u32(body.data() + pos);
    pos += 4;
    if (flen > body.size() - pos) return malformed("field longer than the frame");
    m.fields.emplace_back(body.substr(pos, flen));
    pos += flen;
  }
  if (pos != body.size()) return malformed("trailing bytes");
  if (response && m.columns != 0 && m.fields.size() % m.columns != 0) {
    return malformed("fields do not fill whole rows");
  }
  return std::size_t{kFrameHeaderBytes + len};
}

}  // namespace

void encode_request(const Message& m, std::string& out) { encode(m, false, out); }
void encode_response(const Message& m, std::string& out) { encode(m, true, out); }

Result<std::size_t> decode_request(std::string_view in, Message& m) {
  return decode(in, false, kRequestBytesMax, m);
}
Result<std::size_t> decode_request_within(std::string_view in, Message& m, std::uint32_t max) {
  return decode(in, false, std::min(max, kRequestBytesMax), m);
}
Result<std::size_t> decode_response(std::string_view in, Message& m) {
  return decode(in, true, kResponseBytesMax, m);
}

}  // namespace rumor::tools
