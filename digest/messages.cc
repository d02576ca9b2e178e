#include "digest/messages.h"

#include <bit>
#include <cstring>
#include <string>

#include "base/assert.h"

namespace rumor::digest {

Status TreeParams::validate() const {
  auto bad = [](std::string m) { return Status::error(Code::kInvalidArgument, std::move(m)); };
  if (fanout_log2 < 1 || fanout_log2 > kFanoutLog2Max) {
    return bad("fanout_log2 must be in [1, 6], got " + std::to_string(fanout_log2));
  }
  if (depth_max < 1 || fanout_log2 * depth_max > 32) {
    return bad("depth_max must be >= 1 with fanout_log2 * depth_max <= 32, got " +
               std::to_string(depth_max));
  }
  if (hash_bytes < 3 || hash_bytes > 8) {
    return bad("hash_bytes must be in [3, 8], got " + std::to_string(hash_bytes));
  }
  if (shards_log2 > 16) return bad("shards_log2 must be at most 16");
  return Status::ok();
}

std::uint32_t key_fingerprint(std::uint64_t key_hash, std::uint32_t node_bits) {
  RUMOR_ASSERT(node_bits <= 32);
  return static_cast<std::uint32_t>((key_hash << node_bits) >> 32);
}

std::uint64_t kfp_lo(std::uint32_t node_bits, std::uint64_t node_index, std::uint32_t kfp) {
  RUMOR_ASSERT(node_bits <= 32);
  return prefix_lo(node_bits, node_index) | (static_cast<std::uint64_t>(kfp) << (32 - node_bits));
}

std::uint64_t kfp_hi(std::uint32_t node_bits, std::uint64_t node_index, std::uint32_t kfp) {
  return kfp_lo(node_bits, node_index, kfp) | ((std::uint64_t{1} << (32 - node_bits)) - 1);
}

Item make_item(std::uint64_t key_hash, const Version& v, bool tombstone, std::uint32_t node_bits,
               std::uint64_t seed) {
  Item it;
  it.kfp = key_fingerprint(key_hash, node_bits);
  it.hlc = v.hlc;
  it.efp = static_cast<std::uint16_t>(salted(entry_hash(key_hash, v, tombstone), seed));
  return it;
}

// ---------------------------------------------------------------------------------------------
// Encoders

std::uint64_t session_seed(std::uint32_t session) {
  return XXH3_64bits_withSeed(&session, sizeof session, 0x5275'6d6f'7253'6565ull);  // "RumorSee"
}

void put_header(ByteWriter& w, const MsgHeader& h) {
  RUMOR_ASSERT(h.seed == session_seed(h.session));
  w.u8(static_cast<std::uint8_t>(h.type));
  w.u8(kFormatVersion);
  w.u8(h.params.fanout_log2);
  w.u8(h.params.depth_max);
  w.u8(h.params.hash_bytes);
  w.u8(h.params.shards_log2);
  w.u32(h.session);
}

namespace {
std::size_t node_bits_on_wire(std::uint32_t level, const TreeParams& p) {
  return p.level_bits() + p.shards_log2 + p.bits(level);
}
}  // namespace

std::size_t node_bytes(const TreeNode& n, const TreeParams& p) {
  return (node_bits_on_wire(n.level, p) + 7) / 8;
}

void put_node(ByteWriter& w, const TreeNode& n, const TreeParams& p) {
  RUMOR_ASSERT(n.shard < p.shards());
  RUMOR_ASSERT(n.level <= p.depth_max);
  RUMOR_ASSERT(p.bits(n.level) == 32 || n.index < (std::uint64_t{1} << p.bits(n.level)));
  const std::uint64_t v = n.level | (std::uint64_t{n.shard} << p.level_bits()) |
                          (std::uint64_t{n.index} << (p.level_bits() + p.shards_log2));
  w.uint_n(v, node_bytes(n, p));
}

void put_item(ByteWriter& w, const Item& it) {
  w.u32(it.kfp);
  w.u64(it.hlc);
  w.u16(it.efp);
}

void put_hash(ByteWriter& w, std::uint64_t salted_hash, const TreeParams& p) {
  w.uint_n(salted_hash, p.hash_bytes);
}

std::size_t entry_bytes(const EntryRef& e) {
  const std::size_t vlen = e.tombstone ? 0 : e.value.size();
  return 1 + ByteWriter::varint_size(e.key.size()) + ByteWriter::varint_size(vlen) + 16 +
         e.key.size() + vlen;
}

void put_entry(ByteWriter& w, const EntryRef& e) {
  RUMOR_ASSERT(!e.key.empty());
  RUMOR_ASSERT(e.key.size() <= kKeyBytesWireMax);
  RUMOR_ASSERT(!e.version.is_zero());
  const std::size_t vlen = e.tombstone ? 0 : e.value.size();
  RUMOR_ASSERT(vlen <= kValueBytesWireMax);
  w.u8(e.tombstone ? 1 : 0);
  w.varint(e.key.size());
  w.varint(vlen);
  w.u64(e.version.hlc);
  w.u64(e.version.node);
  w.bytes(e.key.data(), e.key.size());
  if (vlen) w.bytes(e.value.data(), vlen);
}

// ---------------------------------------------------------------------------------------------
// Views

std::uint64_t HashesView::at(std::uint32_t i) const {
  RUMOR_ASSERT(i < n);
  std::uint64_t v = 0;
  std::memcpy(&v, p + std::size_t{i} * width, width);
  return v;
}

Item ItemsView::at(std::uint32_t i) const {
  RUMOR_ASSERT(i < n);
  const std::uint8_t* q = p + std::size_t{i} * kItemBytes;
  Item it;
  std::memcpy(&it.kfp, q, 4);
  std::memcpy(&it.hlc, q + 4, 8);
  std::memcpy(&it.efp, q + 12, 2);
  return it;
}

std::uint32_t KfpsView::at(std::uint32_t i) const {
  RUMOR_ASSERT(i < n);
  std::uint32_t v;
  std::memcpy(&v, p + std::size_t{i} * 4, 4);
  return v;
}

std::uint32_t BitsView::popcount() const {
  std::uint32_t c = 0;
  for (std::uint32_t i = 0; i < (n + 7) / 8; ++i) c += std::popcount(static_cast<unsigned>(p[i]));
  return c;
}

namespace {

// One entry; false (r failed) if inconsistent. Valid entries never fail this twice.
bool read_entry(ByteReader& r, EntryRef* e) {
  const std::uint8_t flags = r.u8();
  const std::uint64_t klen = r.varint(3);
  const std::uint64_t vlen = r.varint(5);
  const std::uint64_t hlc = r.u64();
  const std::uint64_t node = r.u64();
  if (!r.ok() || (flags & ~1u) != 0 || klen == 0 || klen > kKeyBytesWireMax ||
      vlen > kValueBytesWireMax || ((flags & 1) && vlen != 0) || (hlc == 0 && node == 0)) {
    r.fail();
    return false;
  }
  auto k = r.bytes(klen);
  auto v = r.bytes(vlen);
  if (!r.ok()) return false;
  e->key = std::string_view(reinterpret_cast<const char*>(k.data()), k.size());
  e->value = std::string_view(reinterpret_cast<const char*>(v.data()), v.size());
  e->version = Version{hlc, node};
  e->tombstone = (flags & 1) != 0;
  return true;
}

// A u16 count and that many entries; the caller records the byte span.
bool read_entries(ByteReader& r, EntriesView* out) {
  const std::uint16_t n = r.u16();
  EntryRef e;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (!read_entry(r, &e)) return false;
  }
  if (!r.ok()) return false;
  out->n = n;
  return true;
}

// A bitmap of n bits with zero padding.
bool read_bits(ByteReader& r, std::uint32_t n, BitsView* out) {
  const std::size_t nb = (n + 7) / 8;
  auto b = r.bytes(nb);
  if (!r.ok()) return false;
  if (n % 8 && (b[nb - 1] >> (n % 8)) != 0) {
    r.fail();
    return false;
  }
  out->p = b.data();
  out->n = n;
  return true;
}

class Parser {
 public:
  Parser(std::span<const std::uint8_t> bytes, const DecodeLimits& limits)
      : bytes_(bytes), r_(bytes), limits_(limits) {}

  Status run(MsgHeader* h, const std::function<void(const Record&)>* fn) {
    if (!header(h)) return error_;
    const bool request = h->type == MsgType::kReconcileRequest;
    std::size_t records = 0;
    while (!r_.empty()) {
      Record rec;
      if (!record(request, &rec)) return error_;
      ++records;
      if (fn) (*fn)(rec);
    }
    if (records == 0) return fail("message has no records");
    return Status::ok();
  }

 private:
  Status fail(std::string what) {
    error_ = Status::error(Code::kMalformed, "reconcile message at byte " +
                                                 std::to_string(r_.position()) + ": " + what);
    r_.fail();
    return error_;
  }
  bool failed(const char* what) {
    (void)fail(what);
    return false;
  }

  bool header(MsgHeader* h) {
    const std::uint8_t type = r_.u8();
    const std::uint8_t format = r_.u8();
    p_.fanout_log2 = r_.u8();
    p_.depth_max = r_.u8();
    p_.hash_bytes = r_.u8();
    p_.shards_log2 = r_.u8();
    h->session = r_.u32();
    if (!r_.ok()) return failed("truncated header");
    h->seed = session_seed(h->session);
    if (type != static_cast<std::uint8_t>(MsgType::kReconcileRequest) &&
        type != static_cast<std::uint8_t>(MsgType::kReconcileResponse)) {
      return failed("unknown message type");
    }
    if (format != kFormatVersion) return failed("unknown format version");
    if (!p_.validate()) return failed("invalid tree parameters");
    h->type = static_cast<MsgType>(type);
    h->params = p_;
    return true;
  }

  bool node(TreeNode* n) {
    const std::uint8_t first = r_.u8();
    if (!r_.ok()) return failed("truncated node");
    const std::uint32_t lb = p_.level_bits();
    const std::uint32_t level = first & ((1u << lb) - 1);
    if (level > p_.depth_max) return failed("level beyond depth_max");
    const std::size_t total = node_bits_on_wire(level, p_);
    const std::size_t nbytes = (total + 7) / 8;
    std::uint64_t v = first;
    if (nbytes > 1) v |= r_.uint_n(nbytes - 1) << 8;
    if (!r_.ok()) return failed("truncated node");
    if (total < 64 && (v >> total) != 0) return failed("node padding bits set");
    n->level = static_cast<std::uint8_t>(level);
    n->shard = static_cast<std::uint16_t>((v >> lb) & ((std::uint64_t{1} << p_.shards_log2) - 1));
    n->index = static_cast<std::uint32_t>(v >> (lb + p_.shards_log2));
    return true;
  }

  bool hashes(std::uint32_t n, HashesView* out) {
    auto b = r_.bytes(std::size_t{n} * p_.hash_bytes);
    if (!r_.ok()) return failed("truncated hashes");
    out->p = b.data();
    out->n = n;
    out->width = p_.hash_bytes;
    return true;
  }

  bool items(ItemsView* out) {
    const std::uint16_t n = r_.u16();
    auto b = r_.bytes(std::size_t{n} * kItemBytes);
    if (!r_.ok()) return failed("truncated items");
    out->p = b.data();
    out->n = n;
    return true;
  }

  bool bloom(BloomView* out) {
    if (!BloomView::decode(r_, limits_.bloom_blocks_max, out)) return failed("bad bloom filter");
    return true;
  }

  bool entries(EntriesView* out) {
    const std::size_t start = r_.position();
    if (!read_entries(r_, out)) return failed("bad entry");
    out->bytes = bytes_.subspan(start, r_.position() - start);
    return true;
  }

  bool cursor_in(const TreeNode& n, std::uint64_t c) {
    const std::uint32_t bits = p_.bits(n.level);
    if (c < prefix_lo(bits, n.index) || c > prefix_hi(bits, n.index)) {
      return failed("cursor outside its node");
    }
    return true;
  }

  // Sub-records for the children named by `differ`, at child_level.
  bool subs(std::uint32_t count, std::uint32_t child_level, SubsView* out) {
    const std::size_t start = r_.position();
    for (std::uint32_t i = 0; i < count; ++i) {
      const auto kind = static_cast<Rec>(r_.u8());
      if (!r_.ok()) return failed("truncated sub-record");
      SubRecord s;
      if (kind == Rec::kHashes) {
        if (child_level >= p_.depth_max) return failed("child hashes below depth_max");
        if (!hashes(p_.fanout(), &s.hashes)) return false;
      } else if (kind == Rec::kList) {
        if (!items(&s.items)) return false;
      } else if (kind == Rec::kBloom) {
        if (child_level != p_.depth_max) return failed("bloom sub-record above depth_max");
        if (!bloom(&s.bloom)) return false;
      } else {
        return failed("unknown sub-record kind");
      }
    }
    out->bytes = bytes_.subspan(start, r_.position() - start);
    out->n = count;
    out->params = p_;
    out->child_level = child_level;
    out->blocks_max = limits_.bloom_blocks_max;
    return true;
  }

  bool diff_bits(std::uint32_t n, Record* rec) {
    if (!read_bits(r_, n, &rec->covered) || !read_bits(r_, n, &rec->differ)) {
      return failed("truncated bitmap or padding bits set");
    }
    for (std::uint32_t i = 0; i < (n + 7) / 8; ++i) {
      if (rec->differ.p[i] & ~rec->covered.p[i]) return failed("differ bit outside covered");
    }
    return true;
  }

  bool record(bool request, Record* rec) {
    const std::uint8_t t = r_.u8();
    if (!r_.ok()) return failed("truncated record");
    rec->type = static_cast<Rec>(t);
    const bool is_request_type = t >= 0x01 && t <= kRecRequestMax;
    const bool is_response_type = t >= 0x11 && t <= kRecResponseMax;
    if (!is_request_type && !is_response_type) return failed("unknown record type");
    if (request != is_request_type) return failed("record type does not match message type");
    switch (rec->type) {
      case Rec::kRoots:
      case Rec::kRootsDiff: {
        rec->first_shard = r_.u16();
        rec->shard_count = r_.u16();
        if (!r_.ok()) return failed("truncated roots");
        if (rec->shard_count == 0 || rec->shard_count > kRootsPerRecordMax ||
            std::uint32_t{rec->first_shard} + rec->shard_count > p_.shards()) {
          return failed("shard range out of bounds");
        }
        if (rec->type == Rec::kRoots) return hashes(rec->shard_count, &rec->hashes);
        if (!diff_bits(rec->shard_count, rec)) return false;
        return subs(rec->differ.popcount(), 0, &rec->subs);
      }
      case Rec::kHashes:
        if (!node(&rec->node)) return false;
        if (rec->node.level >= p_.depth_max) return failed("hashes of a node at depth_max");
        return hashes(p_.fanout(), &rec->hashes);
      case Rec::kList:
        if (!node(&rec->node)) return false;
        rec->cursor = r_.u64();
        if (!r_.ok()) return failed("truncated cursor");
        if (!cursor_in(rec->node, rec->cursor)) return false;
        return items(&rec->items);
      case Rec::kBloom:
        if (!node(&rec->node)) return false;
        rec->cursor = r_.u64();
        rec->flags = r_.u8();
        if (!r_.ok()) return failed("truncated bloom request");
        if (rec->flags & ~kFlagWantBloom) return failed("unknown bloom flags");
        if (!cursor_in(rec->node, rec->cursor)) return false;
        return bloom(&rec->bloom);
      case Rec::kPull: {
        if (!node(&rec->node)) return false;
        rec->part = r_.u16();
        const std::uint16_t n = r_.u16();
        auto b = r_.bytes(std::size_t{n} * 4);
        if (!r_.ok()) return failed("truncated pull");
        if (n == 0) return failed("empty pull");
        rec->kfps.p = b.data();
        rec->kfps.n = n;
        return true;
      }
      case Rec::kPush:
        if (!node(&rec->node)) return false;
        rec->part = r_.u16();
        if (!entries(&rec->entries)) return false;
        if (rec->entries.n == 0) return failed("empty push");
        return true;
      case Rec::kExpand:
        if (!node(&rec->node)) return false;
        if (rec->node.level >= p_.depth_max) return failed("expansion of a node at depth_max");
        if (!diff_bits(p_.fanout(), rec)) return false;
        return subs(rec->differ.popcount(), rec->node.level + 1u, &rec->subs);
      case Rec::kListed: {
        if (!node(&rec->node)) return false;
        rec->flags = r_.u8();
        if (!r_.ok()) return failed("truncated listed");
        if (rec->flags & ~kFlagMore) return failed("unknown listed flags");
        if (rec->flags & kFlagMore) {
          rec->cursor = r_.u64();
          if (!r_.ok()) return failed("truncated cursor");
          if (!cursor_in(rec->node, rec->cursor)) return false;
        }
        const std::uint16_t want_n = r_.u16();
        if (!r_.ok()) return failed("truncated want count");
        if (!read_bits(r_, want_n, &rec->want)) return failed("bad want bitmap");
        return entries(&rec->entries);
      }
      case Rec::kBloomed:
        if (!node(&rec->node)) return false;
        rec->flags = r_.u8();
        if (!r_.ok()) return failed("truncated bloomed");
        if (rec->flags & ~(kFlagMore | kFlagHasBloom)) return failed("unknown bloomed flags");
        if (rec->flags & kFlagMore) {
          rec->cursor = r_.u64();
          if (!r_.ok()) return failed("truncated cursor");
          if (!cursor_in(rec->node, rec->cursor)) return false;
        }
        if ((rec->flags & kFlagHasBloom) && !bloom(&rec->bloom)) return false;
        return entries(&rec->entries);
      case Rec::kPulled:
        if (!node(&rec->node)) return false;
        rec->part = r_.u16();
        rec->flags = r_.u8();
        if (!r_.ok()) return failed("truncated pulled");
        if (rec->flags & ~kFlagMore) return failed("unknown pulled flags");
        return entries(&rec->entries);
      case Rec::kAck:
        if (!node(&rec->node)) return false;
        rec->part = r_.u16();
        if (!r_.ok()) return failed("truncated ack");
        return true;
      case Rec::kSummary:
        rec->sums.count = r_.u64();
        rec->sums.hash = r_.u64();
        rec->sums.keys = r_.u64();
        rec->sums.cross = r_.u64();
        if (!r_.ok()) return failed("truncated summary");
        return true;
      case Rec::kSummarized: {
        const std::uint8_t v = r_.u8();
        if (!r_.ok()) return failed("truncated summarized");
        if (v > kVerdictMax) return failed("unknown verdict");
        rec->verdict = static_cast<Verdict>(v);
        if (rec->verdict == Verdict::kRiblt) {
          rec->count = r_.varint(3);
          rec->tag = r_.u32();
          if (!r_.ok()) return failed("truncated riblt verdict");
          if (rec->count == 0 || rec->count > kRibltSymbolsPerRequestMax) {
            return failed("riblt stream length out of bounds");
          }
          return true;
        }
        if (rec->verdict == Verdict::kEntries) {
          if (!entries(&rec->entries)) return false;
          if (rec->entries.n == 0) return failed("verdict without entries");
          return true;
        }
        if (rec->verdict == Verdict::kWant || rec->verdict == Verdict::kVersion) {
          rec->key_hash = r_.u64();
          rec->entry_hash = r_.u64();
          if (rec->verdict == Verdict::kVersion) {
            rec->version.hlc = r_.u64();
            rec->version.node = r_.u64();
          }
          if (!r_.ok()) return failed("truncated summarized");
          if (rec->key_hash == 0) return failed("key hash 0");
          if (rec->verdict == Verdict::kVersion && rec->version.is_zero()) {
            return failed("zero version");
          }
        }
        return true;
      }
      case Rec::kRibltStart: {
        rec->sums.count = r_.u64();
        rec->sums.hash = r_.u64();
        rec->sums.keys = r_.u64();
        rec->sums.cross = r_.u64();
        rec->riblt_mode = r_.u8();
        const std::uint8_t n = r_.u8();
        rec->residues = r_.bytes(n);
        if (!r_.ok()) return failed("truncated riblt start");
        if (rec->riblt_mode > kRibltModeForced) return failed("unknown riblt mode");
        if (n > kRibltResiduesMax) return failed("too many residues");
        return true;
      }
      case Rec::kRibltMore:
        rec->first = r_.varint(3);
        rec->count = r_.varint(3);
        if (!r_.ok()) return failed("truncated riblt request");
        if (rec->count == 0 || rec->count > kRibltSymbolsPerRequestMax ||
            rec->first + rec->count > kRibltSymbolIndexMax) {
          return failed("riblt symbol range out of bounds");
        }
        return true;
      case Rec::kRibltSymbols: {
        rec->first = r_.varint(3);
        rec->tag = r_.u32();
        rec->count = r_.u16();
        rec->symbols = r_.bytes(rec->count * kRibltSymbolBytes);
        if (!r_.ok()) return failed("truncated riblt symbols");
        if (rec->count == 0 || rec->first + rec->count > kRibltSymbolIndexMax) {
          return failed("riblt symbol range out of bounds");
        }
        return true;  // data and checksum are fixed widths: every byte string is a symbol
      }
      case Rec::kRibltPull:
        rec->part = r_.u16();
        rec->count = r_.u16();
        rec->ids = r_.bytes(rec->count * kRibltIdBytes);
        if (!r_.ok()) return failed("truncated riblt pull");
        if (rec->count == 0) return failed("empty riblt pull");
        return true;
      case Rec::kRibltPush: {
        rec->part = r_.u16();
        if (!entries(&rec->entries)) return false;
        if (rec->entries.n == 0) return failed("empty riblt push");
        // Pairs (entry index, element id): the peer's element the decoding took for another
        // version of that entry's key.
        rec->count = r_.u16();
        rec->ids = r_.bytes(rec->count * (2 + kRibltIdBytes));
        if (!r_.ok()) return failed("truncated riblt push pairs");
        for (std::size_t i = 0; i < rec->count; ++i) {
          const std::uint16_t idx = static_cast<std::uint16_t>(
              rec->ids[i * (2 + kRibltIdBytes)] | (rec->ids[i * (2 + kRibltIdBytes) + 1] << 8));
          if (idx >= rec->entries.n) return failed("riblt push pair names no entry");
        }
        return true;
      }
      case Rec::kRibltPulled:
        rec->part = r_.u16();
        rec->first = r_.u16();
        rec->count = r_.u16();
        if (!r_.ok()) return failed("truncated riblt pulled");
        if (rec->count == 0) return failed("riblt pulled answers nothing");
        return entries(&rec->entries);
      case Rec::kRibltPushed:
        rec->part = r_.u16();
        return entries(&rec->entries);
    }
    return failed("unknown record type");
  }

  std::span<const std::uint8_t> bytes_;
  ByteReader r_;
  DecodeLimits limits_;
  TreeParams p_;
  Status error_;
};

}  // namespace

void EntriesView::for_each(const std::function<void(const EntryRef&)>& fn) const {
  ByteReader r(bytes);
  (void)r.u16();
  EntryRef e;
  for (std::uint32_t i = 0; i < n; ++i) {
    const bool ok = read_entry(r, &e);
    RUMOR_ASSERT(ok);  // validated by parse_message
    fn(e);
  }
}

void SubsView::for_each(const std::function<void(const SubRecord&)>& fn) const {
  ByteReader r(bytes);
  for (std::uint32_t i = 0; i < n; ++i) {
    SubRecord s;
    s.kind = static_cast<Rec>(r.u8());
    if (s.kind == Rec::kHashes) {
      auto b = r.bytes(std::size_t{params.fanout()} * params.hash_bytes);
      s.hashes = HashesView{b.data(), params.fanout(), params.hash_bytes};
    } else if (s.kind == Rec::kList) {
      const std::uint16_t k = r.u16();
      auto b = r.bytes(std::size_t{k} * kItemBytes);
      s.items = ItemsView{b.data(), k};
    } else {
      RUMOR_ASSERT(s.kind == Rec::kBloom);
      const bool ok = BloomView::decode(r, blocks_max, &s.bloom);
      RUMOR_ASSERT(ok);
    }
    RUMOR_ASSERT(r.ok());  // validated by parse_message
    fn(s);
  }
}

Status parse_message(std::span<const std::uint8_t> bytes, const DecodeLimits& limits,
                     MsgHeader* header, const std::function<void(const Record&)>& fn) {
  {
    Parser check(bytes, limits);
    if (Status s = check.run(header, nullptr); !s) return s;
  }
  if (fn) {
    Parser act(bytes, limits);
    const Status s = act.run(header, &fn);
    RUMOR_ASSERT(s.is_ok());
  }
  return Status::ok();
}

}  // namespace rumor::digest
