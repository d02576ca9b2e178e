// The admin protocol between `rumor <command>` and a running `rumor agent`: length-prefixed
// binary frames over TCP on loopback (docs/agent.md "Admin protocol").
//
//   frame     = u32 big-endian length N, then N bytes of message (1 <= N <= the side's max)
//   request   = u8 version (1), u8 op, fields
//   response  = u8 version (1), u8 code (rumor::Code), u16 columns, fields
//   fields    = u32 count, then count × (u32 length, bytes)
//
// A response's fields are a table read row by row (`columns` per row); an error carries one
// field, the message. Numbers travel as decimal text, so a frame is readable in a hex dump.
// Several requests may be pipelined on one connection; answers come back in order. `watch`
// turns its connection into a stream: one empty OK response, then one response per change.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rumor/node.h"
#include "rumor/status.h"

namespace rumor::tools {

inline constexpr std::uint8_t kAdminProtocolVersion = 1;
// Limits: a request carries at most one key and one value, so an agent accepts requests up to
// request_bytes_limit() of its store's limits (a 1 MiB value by default); kRequestBytesMax is
// what any agent may accept (the largest value a node allows, and a key); a response may list
// many keys or members.
inline constexpr std::uint32_t kRequestBytesMax = kValueBytesLimit + (1u << 20);
inline constexpr std::uint32_t kResponseBytesMax = 64u << 20;
inline constexpr std::uint32_t kFieldsMax = 1u << 22;
inline constexpr std::uint32_t kFrameHeaderBytes = 4;
// The largest request an agent with these store limits accepts: a set of the longest key and
// value with room for the framing, and never below 1 MiB (the limit before large values).
inline std::uint32_t request_bytes_limit(std::uint32_t key_bytes_max,
                                         std::uint32_t value_bytes_max) {
  const std::uint64_t n = std::uint64_t{key_bytes_max} + value_bytes_max + (64u << 10);
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(kRequestBytesMax, std::max<std::uint64_t>(n, 1u << 20)));
}

enum class Op : std::uint8_t {
  kGet = 1,      // [key] -> [key, value, hlc, writer, writer_name]
  kSet = 2,      // [key, value] -> [key, hlc, writer, writer_name]
  kDel = 3,      // [key] -> [key, hlc, writer, writer_name]
  kKeys = 4,     // [prefix, limit] -> rows of [key, value, hlc, writer, writer_name]
  kMembers = 5,  // [] -> rows of [name, id, address, state, incarnation, metadata]
  kStats = 6,    // [] -> rows of [name, value]
  kWatch = 7,    // [prefix] -> stream of [key, value, hlc, writer, writer_name, deleted, local]
  kInfo = 8,     // [] -> rows of [name, value]: agent name, id, addresses, backend
  // [action, argument] -> rows of [what, a, b]: ("mode", mode, ""), then one
  // ("key", fingerprint, "primary" | "accepted") per key. Actions: list, install (argument: a
  // base64 key), use and remove (a fingerprint or a base64 key), mode (off|accept|send|require).
  kKeyring = 9,
  // [action, args...] -> rows of [key, value]: this agent's tags after the action. Actions:
  // list; set (args: KEY=VALUE...); del (args: KEY...).
  kTags = 10,
  // [address...] (numeric HOST:PORT, resolved by the client) -> rows of [address]: a join
  // sent to each (Node::join).
  kJoin = 11,
  // [] -> []: the agent leaves the cluster gracefully and exits (as on SIGTERM).
  kLeave = 12,
  // [] -> rows of [what, detail]: the agent reads its configuration again (as on SIGHUP) and
  // applies what can change at run time; ("applied", key) and ("restart_needed", key) rows.
  kReload = 13,
};
std::string_view op_name(Op op);

struct Message {
  std::uint8_t version = kAdminProtocolVersion;
  std::uint8_t kind = 0;  // an Op in a request, a rumor::Code in a response
  std::uint16_t columns = 0;
  std::vector<std::string> fields;

  bool ok() const { return kind == static_cast<std::uint8_t>(Code::kOk); }
  std::size_t rows() const { return columns == 0 ? 0 : fields.size() / columns; }
  const std::string& at(std::size_t row, std::size_t col) const {
    return fields[row * columns + col];
  }
};

Message make_request(Op op, std::vector<std::string> fields);
Message make_response(std::uint16_t columns, std::vector<std::string> fields);
Message make_error(const Status& status);

// Appends one whole frame (header and message) to out.
void encode_request(const Message& m, std::string& out);
void encode_response(const Message& m, std::string& out);

// Looks for one whole frame at the front of `in`. Returns the number of bytes it occupies and
// fills `m`; 0 when more bytes are needed; an error when the frame can never be valid (too long,
// malformed, another protocol version).
Result<std::size_t> decode_request(std::string_view in, Message& m);
// The same, refusing frames longer than `max` (an agent's request_bytes_limit()).
Result<std::size_t> decode_request_within(std::string_view in, Message& m, std::uint32_t max);
Result<std::size_t> decode_response(std::string_view in, Message& m);

}  // namespace rumor::tools
