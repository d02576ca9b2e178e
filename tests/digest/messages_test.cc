// Reconciliation message bodies: every record type round-trips, and the decoder rejects
// truncated, oversized and inconsistent input as a whole (the message has no effect).
#include "digest/messages.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/sync/reconcile.h"

namespace rumor::digest {
namespace {

struct Msg {
  explicit Msg(MsgType t, TreeParams p = {}, std::uint32_t session = 7) : params(p) {
    put_header(w, MsgHeader{t, p, session, session_seed(session)});
  }
  std::vector<std::uint8_t> bytes() const { return {w.written().begin(), w.written().end()}; }
  void node(TreeNode n) { put_node(w, n, params); }
  void hashes(std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) put_hash(w, 0x123456 + i, params);
  }

  std::vector<std::uint8_t> buf = std::vector<std::uint8_t>(8192);
  ByteWriter w{buf};
  TreeParams params;
};

Status parse(const std::vector<std::uint8_t>& b, std::vector<Record>* out = nullptr,
             MsgHeader* h = nullptr) {
  MsgHeader tmp;
  return parse_message(b, DecodeLimits{}, h ? h : &tmp, [&](const Record& r) {
    if (out) out->push_back(r);
  });
}

// Touches every view of every record, as a consumer would.
void touch_all(const std::vector<std::uint8_t>& b) {
  MsgHeader h;
  std::uint64_t sink = 0;
  (void)parse_message(b, DecodeLimits{}, &h, [&](const Record& r) {
    for (std::uint32_t i = 0; i < r.hashes.n; ++i) sink += r.hashes.at(i);
    for (std::uint32_t i = 0; i < r.items.n; ++i) sink += r.items.at(i).hlc;
    for (std::uint32_t i = 0; i < r.kfps.n; ++i) sink += r.kfps.at(i);
    for (std::uint32_t i = 0; i < r.want.n; ++i) sink += r.want.test(i);
    if (r.bloom.valid()) sink += r.bloom.may_contain(sink);
    r.entries.for_each([&](const EntryRef& e) { sink += e.key.size() + e.value.size(); });
    r.subs.for_each([&](const SubRecord& s) {
      for (std::uint32_t i = 0; i < s.hashes.n; ++i) sink += s.hashes.at(i);
      for (std::uint32_t i = 0; i < s.items.n; ++i) sink += s.items.at(i).kfp;
      if (s.bloom.valid()) sink += s.bloom.may_contain(sink);
    });
  });
  EXPECT_GE(sink, 0u);
}

const TreeParams kP;  // fan-out 8, depth 6, 3-byte hashes, 64 shards

std::uint64_t lo_of(TreeNode n) { return prefix_lo(kP.bits(n.level), n.index); }

void entry(ByteWriter& w, std::string_view k, std::string_view v, bool tomb = false) {
  put_entry(w, EntryRef{k, v, Version{hlc_pack(1000, 1), 9}, tomb});
}

void small_bloom(ByteWriter& w) {
  BloomFilter f(2, 8, 5);
  f.insert(1);
  f.encode(w);
}

// One valid single-record message of every record type.
std::vector<std::pair<std::string, std::vector<std::uint8_t>>> valid_messages() {
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> out;
  const TreeNode n4{3, 4, 1234};
  {
    Msg m(MsgType::kReconcileRequest);
    m.w.u8(0x01);
    m.w.u16(0);
    m.w.u16(64);
    m.hashes(64);
    out.emplace_back("roots", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);
    m.w.u8(0x02);
    m.node({3, 2, 37});
    m.hashes(8);
    out.emplace_back("hashes", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);
    m.w.u8(0x03);
    m.node(n4);
    m.w.u64(lo_of(n4) + 5);
    m.w.u16(2);
    put_item(m.w, Item{1, 2, 3});
    put_item(m.w, Item{4, 5, 6});
    out.emplace_back("list", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);
    const TreeNode n6{0, 6, 99};
    m.w.u8(0x04);
    m.node(n6);
    m.w.u64(lo_of(n6));
    m.w.u8(kFlagWantBloom);
    small_bloom(m.w);
    out.emplace_back("bloom", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);
    m.w.u8(0x05);
    m.node(n4);
    m.w.u16(3);
    m.w.u16(2);
    m.w.u32(11);
    m.w.u32(12);
    out.emplace_back("pull", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);
    m.w.u8(0x06);
    m.node(n4);
    m.w.u16(1);
    m.w.u16(2);
    entry(m.w, "service_version", "v1.2.4");
    entry(m.w, "gone", "", true);
    out.emplace_back("push", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    m.w.u8(0x11);
    m.w.u16(0);
    m.w.u16(10);
    m.w.u8(0xff);  // covered: shards 0..9
    m.w.u8(0x03);
    m.w.u8(0x24);  // differ: shards 2 and 5
    m.w.u8(0x00);
    m.w.u8(0x02);  // sub: child hashes
    m.hashes(8);
    m.w.u8(0x03);  // sub: summaries
    m.w.u16(1);
    put_item(m.w, Item{7, 8, 9});
    out.emplace_back("roots_diff", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    m.w.u8(0x12);
    m.node({5, 5, 3});  // children at depth_max: a bloom sub-record is allowed
    m.w.u8(0xff);
    m.w.u8(0x81);
    m.w.u8(0x04);
    small_bloom(m.w);
    m.w.u8(0x03);
    m.w.u16(0);
    out.emplace_back("expand", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    m.w.u8(0x13);
    m.node(n4);
    m.w.u8(kFlagMore);
    m.w.u64(lo_of(n4) + 77);
    m.w.u16(5);
    m.w.u8(0x15);
    m.w.u16(1);
    entry(m.w, "k", std::string(100, 'v'));
    out.emplace_back("listed", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    const TreeNode n6{0, 6, 99};
    m.w.u8(0x14);
    m.node(n6);
    m.w.u8(kFlagMore | kFlagHasBloom);
    m.w.u64(lo_of(n6) + 1);
    small_bloom(m.w);
    m.w.u16(0);
    out.emplace_back("bloomed", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    m.w.u8(0x15);
    m.node(n4);
    m.w.u16(3);
    m.w.u8(0);
    m.w.u16(1);
    entry(m.w, "k", "v");
    out.emplace_back("pulled", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);
    m.w.u8(0x16);
    m.node(n4);
    m.w.u16(9);
    out.emplace_back("ack", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileRequest);  // 12
    m.w.u8(0x07);
    for (std::uint64_t i = 1; i <= 4; ++i) m.w.u64(i * 0x0101010101010101ull);
    out.emplace_back("summary", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);  // 13
    m.w.u8(0x17);
    m.w.u8(static_cast<std::uint8_t>(Verdict::kEqual));
    out.emplace_back("summarized equal", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);  // 14
    m.w.u8(0x17);
    m.w.u8(static_cast<std::uint8_t>(Verdict::kEntries));
    m.w.u16(1);
    entry(m.w, "k", "v");
    out.emplace_back("summarized entries", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);  // 15
    m.w.u8(0x17);
    m.w.u8(static_cast<std::uint8_t>(Verdict::kWant));
    m.w.u64(0x1234);
    m.w.u64(0x5678);
    out.emplace_back("summarized want", m.bytes());
  }
  {
    Msg m(MsgType::kReconcileResponse);  // 16
    m.w.u8(0x17);
    m.w.u8(static_cast<std::uint8_t>(Verdict::kVersion));
    m.w.u64(0x1234);
    m.w.u64(0x5678);
    m.w.u64(hlc_pack(1000, 1));
    m.w.u64(9);
    out.emplace_back("summarized version", m.bytes());
  }
  for (auto& [name, b] : out) EXPECT_FALSE(b.empty()) << name;
  return out;
}

TEST(Messages, EveryRecordTypeDecodes) {
  for (const auto& [name, b] : valid_messages()) {
    std::vector<Record> recs;
    MsgHeader h;
    ASSERT_TRUE(parse(b, &recs, &h).is_ok()) << name << ": " << parse(b).to_string();
    ASSERT_EQ(recs.size(), 1u) << name;
    EXPECT_EQ(h.session, 7u);
    EXPECT_EQ(h.seed, session_seed(7));
    EXPECT_TRUE(h.params == kP);
    touch_all(b);
  }
}

TEST(Messages, FieldsRoundTrip) {
  auto msgs = valid_messages();
  std::vector<Record> recs;
  ASSERT_TRUE(parse(msgs[2].second, &recs).is_ok());  // list
  const Record& r = recs[0];
  EXPECT_EQ(r.type, Rec::kList);
  EXPECT_EQ(r.node, (TreeNode{3, 4, 1234}));
  EXPECT_EQ(r.cursor, lo_of(r.node) + 5);
  ASSERT_EQ(r.items.n, 2u);
  EXPECT_EQ(r.items.at(1).kfp, 4u);
  EXPECT_EQ(r.items.at(1).hlc, 5u);
  EXPECT_EQ(r.items.at(1).efp, 6u);
  recs.clear();
  ASSERT_TRUE(parse(msgs[5].second, &recs).is_ok());  // push
  std::vector<EntryRef> es;
  recs[0].entries.for_each([&](const EntryRef& e) { es.push_back(e); });
  ASSERT_EQ(es.size(), 2u);
  EXPECT_EQ(es[0].key, "service_version");
  EXPECT_EQ(es[0].value, "v1.2.4");
  EXPECT_TRUE(es[1].tombstone);
  EXPECT_EQ(recs[0].part, 1);
  recs.clear();
  ASSERT_TRUE(parse(msgs[6].second, &recs).is_ok());  // roots_diff
  EXPECT_EQ(recs[0].differ.popcount(), 2u);
  std::vector<Rec> kinds;
  recs[0].subs.for_each([&](const SubRecord& s) { kinds.push_back(s.kind); });
  EXPECT_EQ(kinds, (std::vector<Rec>{Rec::kHashes, Rec::kList}));
}

TEST(Messages, NodeIdsPackAndRoundTripAtEveryLevel) {
  for (std::uint8_t f = 1; f <= kFanoutLog2Max; ++f) {
    TreeParams p;
    p.fanout_log2 = f;
    p.depth_max = static_cast<std::uint8_t>(32 / f);
    p.shards_log2 = 16;
    for (std::uint8_t level = 0; level <= p.depth_max; ++level) {
      const std::uint32_t bits = p.bits(level);
      const TreeNode n{65535, level, bits == 32 ? 0xffffffffu : (1u << bits) - 1};
      std::vector<std::uint8_t> buf(64);
      ByteWriter w(buf);
      put_header(w, MsgHeader{MsgType::kReconcileResponse, p, 1, session_seed(1)});
      w.u8(0x16);
      put_node(w, n, p);
      w.u16(0);
      std::vector<Record> recs;
      const std::vector<std::uint8_t> b(w.written().begin(), w.written().end());
      ASSERT_TRUE(parse(b, &recs).is_ok()) << int(f) << " " << int(level);
      EXPECT_EQ(recs[0].node, n);
    }
  }
}

TEST(Messages, EveryTruncationIsRejected) {
  for (const auto& [name, b] : valid_messages()) {
    for (std::size_t n = 0; n < b.size(); ++n) {
      std::vector<std::uint8_t> cut(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
      const Status s = parse(cut);
      ASSERT_FALSE(s.is_ok()) << name << " truncated to " << n;
      EXPECT_EQ(s.code(), Code::kMalformed);
    }
  }
}

TEST(Messages, TrailingBytesAreRejected) {
  for (const auto& [name, b] : valid_messages()) {
    for (std::uint8_t extra : {0x00, 0x01, 0x07, 0x11, 0xff}) {
      auto longer = b;
      longer.push_back(extra);
      EXPECT_FALSE(parse(longer).is_ok()) << name << " + " << int(extra);
    }
  }
}

// Mutates one valid message with `edit` (on a copy) and expects rejection.
void expect_rejected(const std::string& name, std::size_t which,
                     const std::function<void(std::vector<std::uint8_t>&)>& edit) {
  auto b = valid_messages()[which].second;
  edit(b);
  const Status s = parse(b);
  EXPECT_FALSE(s.is_ok()) << name;
  if (!s.is_ok()) {
    EXPECT_EQ(s.code(), Code::kMalformed) << name;
  }
}

TEST(Messages, InconsistentInputIsRejected) {
  constexpr std::size_t kH = kHeaderBytes;
  // Header.
  expect_rejected("message type 3", 0, [](auto& b) { b[0] = 3; });
  expect_rejected("format 1", 0, [](auto& b) { b[1] = 1; });
  expect_rejected("fanout 0", 0, [](auto& b) { b[2] = 0; });
  expect_rejected("fanout 7", 0, [](auto& b) { b[2] = 7; });
  expect_rejected("depth 0", 0, [](auto& b) { b[3] = 0; });
  expect_rejected("fanout * depth > 32", 0, [](auto& b) { b[3] = 11; });
  expect_rejected("hash bytes 2", 0, [](auto& b) { b[4] = 2; });
  expect_rejected("hash bytes 9", 0, [](auto& b) { b[4] = 9; });
  expect_rejected("shards 2^17", 0, [](auto& b) { b[5] = 17; });
  expect_rejected("header only", 0, [](auto& b) { b.resize(kH); });
  // Record types against message types.
  expect_rejected("response record in a request", 0, [](auto& b) { b[kH] = 0x16; });
  expect_rejected("request record in a response", 11, [](auto& b) { b[kH] = 0x06; });
  expect_rejected("unknown record type", 0, [](auto& b) { b[kH] = 0x09; });
  // Roots: shard range.
  expect_rejected("roots count 0", 0, [](auto& b) { b[kH + 3] = 0; });
  expect_rejected("roots beyond shard count", 0, [](auto& b) { b[kH + 1] = 1; });  // first = 1
  expect_rejected("roots count 257", 0, [](auto& b) { b[kH + 3] = 1, b[kH + 4] = 1; });
  // Node ids: level above depth_max (level bits are the low 3 bits of the first byte).
  expect_rejected("level 7 > depth 6", 1, [](auto& b) { b[kH + 1] = (b[kH + 1] & ~7) | 7; });
  expect_rejected("hashes of a node at depth_max", 1,
                  [](auto& b) { b[kH + 1] = (b[kH + 1] & ~7) | 6; });
  // List: cursor outside its node.
  expect_rejected("cursor below node", 2, [](auto& b) {
    const std::size_t at = kH + 1 + node_bytes(TreeNode{3, 4, 1234}, kP);
    for (int i = 0; i < 8; ++i) b[at + i] = 0;
  });
  expect_rejected("item count beyond bytes", 2, [](auto& b) {
    const std::size_t at = kH + 1 + node_bytes(TreeNode{3, 4, 1234}, kP) + 8;
    b[at] = 3;
  });
  // Bloom request: unknown flag, oversized filter, bad k.
  const std::size_t bloom_at = kH + 1 + node_bytes(TreeNode{0, 6, 99}, kP) + 8;
  expect_rejected("bloom flags", 3, [&](auto& b) { b[bloom_at] = 2; });
  expect_rejected("bloom k 0", 3, [&](auto& b) { b[bloom_at + 1] = 0; });
  expect_rejected("bloom blocks beyond bytes", 3, [&](auto& b) { b[bloom_at + 5] = 3; });
  expect_rejected("bloom blocks beyond limit", 3, [&](auto& b) {
    b[bloom_at + 5] = 0x01, b[bloom_at + 6] = 0x20;  // 0x2001 blocks > DecodeLimits 4096
  });
  // Pull and push: empty.
  const std::size_t n4 = node_bytes(TreeNode{3, 4, 1234}, kP);
  expect_rejected("empty pull", 4, [&](auto& b) {
    b[kH + 1 + n4 + 2] = 0;
    b.resize(kH + 1 + n4 + 4);
  });
  expect_rejected("empty push", 5, [&](auto& b) {
    b[kH + 1 + n4 + 2] = 0;
    b.resize(kH + 1 + n4 + 4);
  });
  // Entries: flags, empty key, tombstone with a value, zero version, overlong varint.
  const std::size_t e0 = kH + 1 + n4 + 4;
  expect_rejected("entry flags", 5, [&](auto& b) { b[e0] = 2; });
  expect_rejected("empty key", 5, [&](auto& b) { b[e0 + 1] = 0; });
  expect_rejected("key longer than message", 5, [&](auto& b) { b[e0 + 1] = 0x7f; });
  expect_rejected("live entry's value length marks a tombstone with a value", 5,
                  [&](auto& b) { b[e0] = 1; });
  expect_rejected("zero version", 5, [&](auto& b) {
    for (int i = 0; i < 16; ++i) b[e0 + 3 + i] = 0;
  });
  expect_rejected("overlong varint", 5, [&](auto& b) {
    b[e0 + 1] = 0x8f;  // key length 15 spelled in two bytes: 0x8f 0x00
    b.insert(b.begin() + static_cast<std::ptrdiff_t>(e0 + 2), 0x00);
  });
  // Roots diff: differ outside covered, padding bits, wrong sub-record count or kind.
  expect_rejected("differ outside covered", 6, [](auto& b) { b[kH + 5] = 0xfb; });
  expect_rejected("covered padding bits", 6, [](auto& b) { b[kH + 6] = 0x07; });
  expect_rejected("more differ bits than sub-records", 6, [](auto& b) { b[kH + 7] = 0x25; });
  expect_rejected("unknown sub-record kind", 6, [](auto& b) { b[kH + 9] = 0x07; });
  expect_rejected("bloom sub-record above depth_max", 6, [](auto& b) { b[kH + 9] = 0x04; });
  // Expand of a node at depth_max.
  expect_rejected("expand at depth_max", 7, [](auto& b) { b[kH + 1] = (b[kH + 1] & ~7) | 6; });
  // Listed: want bitmap padding, unknown flags.
  const std::size_t listed_flags = kH + 1 + n4;
  expect_rejected("listed flags", 8, [&](auto& b) { b[listed_flags] = 3; });
  expect_rejected("want padding bits", 8, [&](auto& b) { b[listed_flags + 1 + 8 + 2] = 0x35; });
  // Bloomed: has-bloom flag without a filter.
  expect_rejected("bloomed flag without filter", 9,
                  [&](auto& b) { b[kH + 1 + node_bytes(TreeNode{0, 6, 99}, kP)] = kFlagHasBloom; });
  // Summary and its verdicts: unknown verdict, empty entries, key hash 0, zero version.
  expect_rejected("summary in a response", 13, [](auto& b) { b[kH] = 0x07; });
  expect_rejected("unknown verdict", 13, [](auto& b) { b[kH + 1] = 5; });
  expect_rejected("entries verdict without entries", 14, [](auto& b) {
    b[kH + 2] = 0;
    b.resize(kH + 4);
  });
  expect_rejected("want of key hash 0", 15, [](auto& b) {
    for (int i = 0; i < 8; ++i) b[kH + 2 + i] = 0;
  });
  expect_rejected("version verdict with a zero version", 16, [](auto& b) {
    for (int i = 0; i < 16; ++i) b[kH + 18 + i] = 0;
  });
}

RC_GTEST_PROP(Messages, MutatedMessagesNeverCrashTheDecoder, ()) {
  const auto msgs = valid_messages();
  const auto which = *rc::gen::inRange<std::size_t>(0, msgs.size());
  auto b = msgs[which].second;
  const auto edits = *rc::gen::container<std::vector<std::pair<std::uint16_t, std::uint8_t>>>(
      rc::gen::pair(rc::gen::arbitrary<std::uint16_t>(), rc::gen::arbitrary<std::uint8_t>()));
  for (const auto& [at, v] : edits) {
    if (b.empty()) break;
    switch (v % 3) {
      case 0: b[at % b.size()] = v; break;
      case 1: b.erase(b.begin() + at % b.size()); break;
      case 2: b.insert(b.begin() + at % (b.size() + 1), v); break;
    }
  }
  touch_all(b);  // under ASan this is the check: no read outside the message
}

// Garbage reaches the whole responder and session without effect.
RC_GTEST_PROP(Messages, GarbageDrawsNoResponseAndChangesNothing, ()) {
  const auto junk = *rc::gen::container<std::vector<std::uint8_t>>(rc::gen::arbitrary<std::uint8_t>());
  ManualTimeSource time(1'000'000);
  StoreConfig sc;
  auto store = std::move(Store::create(sc, 1, time).value());
  (void)store->set("a", "b");
  const ReconcileConfig cfg = ReconcileConfig::for_store(sc);
  ReconcileResponder r(*store, 0, cfg);
  int emitted = 0;
  const Status s = r.respond(junk, [&](auto) { ++emitted; });
  if (!s.is_ok()) {
    RC_ASSERT(emitted == 0);
  }
  ReconcileSession session(*store, 0, cfg, 3);
  (void)session.on_datagram(junk);
  RC_ASSERT(store->counters().live_entries == 1u);
}

}  // namespace
}  // namespace rumor::digest
