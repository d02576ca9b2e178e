// The byte codec (digest/codec.h) and the datagram layer over it (engine/wire/wire.h): the wire
// layer's bytes and its failure rules are pinned to what they were before it was built on the
// digest codec, so a change to either shows here before it reaches a peer.
#include "digest/codec.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/wire/wire.h"

namespace rumor {
namespace {

std::string hex(std::span<const std::byte> b) {
  std::string s;
  char two[3];
  for (std::byte x : b) {
    std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(x));
    s += two;
  }
  return s;
}

// Every message type the wire layer encodes, framed by hand where there is no encoder, in one
// datagram. The expected bytes were written by the wire codec before it moved onto ByteWriter.
TEST(WireCodec, DatagramBytesAreUnchanged) {
  using namespace wire;
  std::vector<std::byte> buf(512);
  Writer w(buf);
  write_header(w, Header{0x1234, 0xdeadbeef, 0x0102030405060708ull});
  encode(w, Ping{7, 0x1122334455667788ull});
  encode_ack(w, 9);
  encode_nack(w, 10);
  encode(w, PingReq{11, 42, Address::ipv4(0x7f000001, 7946)});
  std::array<std::uint8_t, 16> v6{};
  v6[0] = 0xfe;
  v6[1] = 0x80;
  v6[15] = 1;
  encode(w, MemberMsg{WireState::kSuspect, 5, 77, 78, Address::ipv6(v6, 9000), "node-a", "meta"});
  encode(w, MemberMsg{WireState::kAlive, 1, 2, 3, Address{}, "", ""});
  encode(w, EntryMsg{false, Version{0xabcdef, 3}, "key", "value"});
  encode(w, EntryMsg{true, Version{1, 2}, "gone", ""});
  const std::size_t join = w.begin(MsgType::kJoin);
  w.u8(1);
  w.end(join);
  const std::size_t sync = w.begin(MsgType::kSyncRequest);
  const std::span<std::byte> t = w.tail();
  t[0] = std::byte{0xaa};
  t[1] = std::byte{0xbb};
  t[2] = std::byte{0xcc};
  w.advance(3);
  w.end(sync);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(hex(std::span<const std::byte>(buf.data(), w.size())),
            "7275010012340000efbeadde0807060504030201010c00070000008877665544332211020400090000000404000a0000000313000b0000002a00000000000000047f0000010a1f0539000105000000000000004d000000000000004e0000000000000006fe8000000000000000000000000000012823066e6f64652d6104006d657461051d000001000000000000000200000000000000030000000000000000000000061d0000efcdab0000000000030000000000000003006b6579050076616c756506190001010000000000000002000000000000000400676f6e65000007010001200300aabbcc");
  EXPECT_EQ(w.remaining(), buf.size() - w.size());
}

TEST(WireCodec, WriterFailureIsStickyUntilRollback) {
  std::vector<std::byte> buf(64);
  wire::Writer w(buf);
  w.u64(1);
  const std::size_t mark = w.size();
  w.str8(std::string(300, 'x'));  // longer than a str8 can say
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(w.size(), mark);
  EXPECT_EQ(w.remaining(), 56u);  // free bytes, even when failed
  w.u8(1);
  EXPECT_EQ(w.size(), mark);  // nothing is written once failed
  w.rollback(mark);
  EXPECT_TRUE(w.ok());
  w.advance(57);  // past the end
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(w.size(), mark);
  w.rollback(mark);
  w.advance(56);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(w.remaining(), 0u);

  std::vector<std::byte> small(5);
  wire::Writer s(small);
  s.u32(1);
  s.u16(2);  // does not fit: nothing of it is written
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.size(), 4u);
  EXPECT_EQ(s.remaining(), 1u);
}

TEST(WireCodec, ReaderFailureYieldsZerosAndStaysFailed) {
  const std::array<std::byte, 3> three{std::byte{1}, std::byte{2}, std::byte{3}};
  wire::Reader r(three);
  EXPECT_EQ(r.u32(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.remaining(), 3u);  // bytes after the position, even when failed
  EXPECT_TRUE(r.take(1).empty());

  const std::array<std::byte, 4> str{std::byte{3}, std::byte{'a'}, std::byte{'b'},
                                     std::byte{'c'}};
  wire::Reader ok(str);
  EXPECT_EQ(ok.str8(3), "abc");
  EXPECT_TRUE(ok.ok() && ok.empty());
  wire::Reader too_long(str);
  EXPECT_EQ(too_long.str8(2), "");  // longer than the caller's bound
  EXPECT_FALSE(too_long.ok());
}

TEST(ByteCodec, LittleEndianVarintAndPatching) {
  std::vector<std::uint8_t> buf(32);
  digest::ByteWriter w(buf);
  w.u16(0x0102);
  w.varint(300);
  w.uint_n(0x0a0b0c, 3);
  std::uint8_t* count = w.reserve(1);
  ASSERT_NE(count, nullptr);
  *count = 9;
  const std::vector<std::uint8_t> want{0x02, 0x01, 0xac, 0x02, 0x0c, 0x0b, 0x0a, 9};
  EXPECT_EQ(std::vector<std::uint8_t>(w.written().begin(), w.written().end()), want);
  digest::ByteReader r(w.written());
  EXPECT_EQ(r.u16(), 0x0102u);
  EXPECT_EQ(r.varint(), 300u);
  EXPECT_EQ(r.uint_n(3), 0x0a0b0cu);
  EXPECT_EQ(r.u8(), 9u);
  EXPECT_TRUE(r.ok() && r.empty());
}

}  // namespace
}  // namespace rumor
