// The admin protocol's codec: round trips, every prefix of a frame asks for more bytes, and
// arbitrary or corrupted input is refused with an error, never a crash or an over-read (run
// under ASan in the asan preset).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include "tools/admin_protocol.h"

namespace rumor::tools {
namespace {

TEST(AdminProtocol, RequestRoundTrip) {
  std::string frame;
  encode_request(make_request(Op::kSet, {"service_version", "v1.2.4"}), frame);
  Message m;
  auto used = decode_request(frame, m);
  ASSERT_TRUE(used.is_ok());
  EXPECT_EQ(*used, frame.size());
  EXPECT_EQ(m.kind, static_cast<std::uint8_t>(Op::kSet));
  ASSERT_EQ(m.fields.size(), 2u);
  EXPECT_EQ(m.fields[1], "v1.2.4");
}

// A set of the largest value an agent allows fits its request limit; one byte more of value
// than the limit leaves room for does not.
TEST(AdminProtocol, AnAgentTakesASetOfItsLargestValueAndNoMore) {
  const std::uint32_t key_max = 256, value_max = 1u << 20;
  const std::uint32_t limit = request_bytes_limit(key_max, value_max);
  std::string frame;
  encode_request(make_request(Op::kSet, {std::string(key_max, 'k'), std::string(value_max, 'v')}),
                 frame);
  Message m;
  auto used = decode_request_within(frame, m, limit);
  ASSERT_TRUE(used.is_ok()) << used.status().to_string();
  EXPECT_EQ(*used, frame.size());
  EXPECT_EQ(m.fields.at(1).size(), value_max);
  // The old 1 MiB frame limit could not carry it.
  EXPECT_GT(frame.size(), (1u << 20) + kFrameHeaderBytes);
  frame.clear();
  encode_request(make_request(Op::kSet, {"k", std::string(limit, 'v')}), frame);
  EXPECT_EQ(decode_request_within(frame, m, limit).status().code(), Code::kTooLarge);
  // Never below the limit before large values, never above the largest any agent allows.
  EXPECT_EQ(request_bytes_limit(16, 16), 1u << 20);
  EXPECT_GT(request_bytes_limit(65535, kValueBytesLimit), kValueBytesLimit + 65535);
  EXPECT_LE(request_bytes_limit(65535, kValueBytesLimit), kRequestBytesMax);
}

TEST(AdminProtocol, ErrorResponseCarriesCodeAndMessage) {
  std::string frame;
  encode_response(make_error(Status::error(Code::kTooLarge, "value is 2000 bytes")), frame);
  Message m;
  ASSERT_TRUE(decode_response(frame, m).is_ok());
  EXPECT_FALSE(m.ok());
  EXPECT_EQ(static_cast<Code>(m.kind), Code::kTooLarge);
  EXPECT_EQ(m.fields.at(0), "value is 2000 bytes");
}

TEST(AdminProtocol, OversizedAndForeignFramesAreRefused) {
  Message m;
  const std::string huge = std::string("\x7f\xff\xff\xff", 4) + "x";
  EXPECT_EQ(decode_request(huge, m).status().code(), Code::kTooLarge);
  const std::string zero("\0\0\0\0", 4);
  EXPECT_FALSE(decode_request(zero, m).is_ok());
  std::string frame;
  encode_request(make_request(Op::kGet, {"k"}), frame);
  frame[4] = 2;  // protocol version 2
  auto r = decode_request(frame, m);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("different releases"), std::string::npos);
}

RC_GTEST_PROP(AdminProtocol, ResponsesRoundTripAndPrefixesNeedMore,
              (std::vector<std::string> cells, std::uint8_t columns_raw)) {
  const std::uint16_t columns = static_cast<std::uint16_t>(columns_raw % 4 + 1);
  cells.resize(cells.size() - cells.size() % columns);
  std::string frame;
  encode_response(make_response(columns, cells), frame);
  Message m;
  auto used = decode_response(frame, m);
  RC_ASSERT(used.is_ok());
  RC_ASSERT(*used == frame.size());
  RC_ASSERT(m.fields == cells);
  RC_ASSERT(m.columns == columns);
  // Every strict prefix asks for more bytes.
  const std::size_t cut = *rc::gen::inRange<std::size_t>(0, frame.size());
  Message partial;
  auto more = decode_response(std::string_view(frame).substr(0, cut), partial);
  RC_ASSERT(more.is_ok());
  RC_ASSERT(*more == 0u);
}

RC_GTEST_PROP(AdminProtocol, CorruptedFramesNeverCrash,
              (std::vector<std::string> fields, std::vector<std::uint8_t> noise)) {
  std::string frame;
  encode_request(make_request(Op::kKeys, fields), frame);
  // Flip bytes anywhere (the length included), then decode whatever is there.
  for (std::size_t i = 0; i < noise.size() && !frame.empty(); ++i) {
    frame[(i * 7919 + noise[i]) % frame.size()] = static_cast<char>(noise[i]);
  }
  Message m;
  auto r = decode_request(frame, m);
  if (r.is_ok() && *r > 0) RC_ASSERT(*r <= frame.size());
}

}  // namespace
}  // namespace rumor::tools
