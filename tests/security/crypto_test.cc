// The seal/open layer (engine/wire/crypto.h): keyring rules, the replay window against a reference
// set, and sealed frames that must open only with the right key, label, header and sequence.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"

namespace rumor::crypto {
namespace {

std::string key_of(char c) { return std::string(kKeyBytes, c); }

// Two keys whose ids differ (ids are a fingerprint byte, so pick until they do).
std::pair<std::string, std::string> two_keys() {
  std::string a = key_of('a');
  for (char c = 'b'; c < 'z'; ++c) {
    std::string b = key_of(c);
    if (key_fingerprint(a).substr(0, 2) != key_fingerprint(b).substr(0, 2)) return {a, b};
  }
  ADD_FAILURE() << "no two keys with different ids";
  return {a, a};
}

std::vector<std::byte> plaintext_datagram(std::string_view label, NodeId sender,
                                          std::string_view payload, std::uint16_t shard = 0x1234) {
  std::vector<std::byte> b(1400);
  wire::Writer w(b);
  wire::write_header(w, wire::Header{shard, wire::label_hash(label), sender});
  const std::size_t at = w.begin(wire::MsgType::kAck);
  w.bytes(payload.data(), payload.size());
  w.end(at);
  b.resize(w.size());
  return b;
}

// Seals a plaintext datagram with `fc`, returning the sealed frame.
std::vector<std::byte> seal(FrameCrypto& fc, std::vector<std::byte> d) {
  const std::size_t len = d.size();
  d.resize(len + kSealOverheadBytes);
  d.resize(fc.seal(d, len));
  return d;
}

std::string messages_of(const Opened& o) {
  return std::string(reinterpret_cast<const char*>(o.messages.data()), o.messages.size());
}

TEST(Keyring, InstallUseRemoveAndListShowOnlyFingerprints) {
  auto [a, b] = two_keys();
  Keyring k;
  EXPECT_FALSE(k.has_primary());
  ASSERT_TRUE(k.install(a).is_ok());
  EXPECT_TRUE(k.has_primary());
  ASSERT_TRUE(k.install(b).is_ok());
  ASSERT_TRUE(k.install(b).is_ok());  // idempotent
  ASSERT_EQ(k.size(), 2u);
  EXPECT_EQ(k.primary_id(), k.list()[0].id);  // the first key installed is primary
  EXPECT_EQ(std::memcmp(k.primary_key(), a.data(), kKeyBytes), 0);
  // The primary cannot go while it seals.
  EXPECT_EQ(k.remove(a, false).code(), Code::kInvalidArgument);
  ASSERT_TRUE(k.use(key_fingerprint(b)).is_ok());
  EXPECT_EQ(std::memcmp(k.primary_key(), b.data(), kKeyBytes), 0);
  ASSERT_TRUE(k.remove(a, false).is_ok());
  EXPECT_EQ(k.size(), 1u);
  EXPECT_EQ(k.find(static_cast<std::uint8_t>(std::stoul(key_fingerprint(a).substr(0, 2), nullptr, 16))),
            nullptr);
  EXPECT_EQ(std::memcmp(k.primary_key(), b.data(), kKeyBytes), 0);
  for (const KeyInfo& i : k.list()) EXPECT_EQ(i.fingerprint.find(b), std::string::npos);
  EXPECT_EQ(k.use("0000000000000000").code(), Code::kNotFound);
  EXPECT_EQ(k.install("short").code(), Code::kInvalidArgument);
}

TEST(Keyring, RefusesASecondKeyWithTheSameIdAndMoreThanTheMax) {
  Keyring k;
  std::set<std::string> ids;
  int installed = 0;
  for (int c = 0; c < 255 && installed < static_cast<int>(kKeysMax) + 4; ++c) {
    std::string key = key_of(static_cast<char>(c));
    const std::string id = key_fingerprint(key).substr(0, 2);
    Status s = k.install(key);
    if (ids.count(id)) {
      EXPECT_EQ(s.code(), Code::kInvalidArgument) << "same id " << id;
    } else if (ids.size() >= kKeysMax) {
      EXPECT_EQ(s.code(), Code::kTooLarge);
      ++installed;
    } else {
      EXPECT_TRUE(s.is_ok()) << s.to_string();
      ids.insert(id);
      ++installed;
    }
  }
  EXPECT_EQ(k.size(), kKeysMax);
}

TEST(KeyCodec, Base64RoundTripAndClearErrors) {
  const std::string raw = generate_key();
  ASSERT_EQ(raw.size(), kKeyBytes);
  EXPECT_NE(raw, generate_key());
  auto back = decode_key(encode_key(raw));
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, raw);
  EXPECT_FALSE(decode_key("not base64!").is_ok());
  EXPECT_FALSE(decode_key(encode_key(raw.substr(0, 16))).is_ok());
  EXPECT_EQ(parse_encryption_mode("require").value(), EncryptionMode::kRequire);
  EXPECT_FALSE(parse_encryption_mode("on").is_ok());
}

// The window against a reference: a sequence number is fresh iff never accepted and within
// kBits of the highest accepted.
RC_GTEST_PROP(ReplayWindow, MatchesAReferenceSet, ()) {
  ReplayWindow w;
  std::set<std::uint64_t> seen;
  std::uint64_t top = 0;
  const auto steps = *rc::gen::inRange<std::size_t>(1, 400);
  std::uint64_t base = 1'000'000;
  for (std::size_t i = 0; i < steps; ++i) {
    const auto jump = *rc::gen::inRange<std::int64_t>(-1500, 1500);
    base = static_cast<std::uint64_t>(static_cast<std::int64_t>(base) + jump / 4);
    const std::uint64_t seq = static_cast<std::uint64_t>(static_cast<std::int64_t>(base) + jump);
    const bool fresh = !seen.count(seq) && (seq > top || top - seq < ReplayWindow::kBits);
    RC_ASSERT(w.check(seq) == fresh);
    if (fresh) {
      w.accept(seq);
      seen.insert(seq);
      top = std::max(top, seq);
    }
  }
}

TEST(FrameCrypto, SealedFrameKeepsTheHeaderInClearAndOpensOnce) {
  auto [a, b] = two_keys();
  FrameCrypto tx("prod", 1400, 16), rx("prod", 1400, 16);
  ASSERT_TRUE(tx.keyring().install(a).is_ok());
  ASSERT_TRUE(rx.keyring().install(a).is_ok());
  ASSERT_TRUE(tx.set_mode(EncryptionMode::kRequire).is_ok());
  ASSERT_TRUE(rx.set_mode(EncryptionMode::kRequire).is_ok());
  tx.start(1'764'000'000'000);
  const auto plain = plaintext_datagram("prod", 7, "secret payload");
  const auto sealed = seal(tx, plain);
  ASSERT_EQ(sealed.size(), plain.size() + kSealOverheadBytes);
  // The header is readable: shard id at byte 4 (big-endian), label hash, sender; flag bit 0.
  EXPECT_EQ(std::memcmp(sealed.data() + 4, plain.data() + 4, kHeaderBytes - 4), 0);
  EXPECT_EQ(static_cast<std::uint8_t>(sealed[3]), kFlagSealed);
  // The payload is not.
  const std::string s(reinterpret_cast<const char*>(sealed.data()), sealed.size());
  EXPECT_EQ(s.find("secret payload"), std::string::npos);

  Opened o = rx.open(sealed, 7);
  ASSERT_EQ(o.kind, Opened::Kind::kOpened);
  EXPECT_EQ(messages_of(o), std::string(reinterpret_cast<const char*>(plain.data()) + kHeaderBytes,
                                        plain.size() - kHeaderBytes));
  // The same frame again is a replay.
  EXPECT_EQ(rx.open(sealed, 7).kind, Opened::Kind::kReplayed);
  // Plaintext is refused in require mode, accepted in send mode.
  EXPECT_EQ(rx.open(plain, 7).kind, Opened::Kind::kPlaintextRefused);
  ASSERT_TRUE(rx.set_mode(EncryptionMode::kSend).is_ok());
  EXPECT_EQ(rx.open(plain, 7).kind, Opened::Kind::kPlain);
  ASSERT_TRUE(rx.set_mode(EncryptionMode::kOff).is_ok());
  EXPECT_EQ(rx.open(seal(tx, plain), 7).kind, Opened::Kind::kSealedRefused);
}

TEST(FrameCrypto, EveryBitOfTheFrameAndTheLabelIsAuthenticated) {
  auto [a, b] = two_keys();
  FrameCrypto tx("prod", 1400, 16), rx("prod", 1400, 16), other_label("staging", 1400, 16);
  for (FrameCrypto* f : {&tx, &rx, &other_label}) {
    ASSERT_TRUE(f->keyring().install(a).is_ok());
    ASSERT_TRUE(f->set_mode(EncryptionMode::kRequire).is_ok());
  }
  tx.start(1'764'000'000'000);
  const auto sealed = seal(tx, plaintext_datagram("prod", 7, "x"));
  // A label that differs (even with the same 32-bit hash in the header: the AD has the label).
  EXPECT_EQ(other_label.open(sealed, 7).kind, Opened::Kind::kAuthFailed);
  // Flip each bit after the flags byte: never opens (the key id byte may name an unknown key,
  // and a sender id changed picks another window but still fails authentication).
  for (std::size_t i = 4; i < sealed.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto t = sealed;
      t[i] ^= static_cast<std::byte>(1 << bit);
      const Opened o = rx.open(t, 7);
      EXPECT_TRUE(o.kind == Opened::Kind::kAuthFailed || o.kind == Opened::Kind::kUnknownKey)
          << "byte " << i << " bit " << bit << " kind " << static_cast<int>(o.kind);
    }
  }
  auto t = sealed;
  t[3] = static_cast<std::byte>(0x81);
  EXPECT_EQ(rx.open(t, 7).kind, Opened::Kind::kBadFlags);
  EXPECT_EQ(rx.open(std::span(sealed).first(kHeaderBytes + 10), 7).kind, Opened::Kind::kTruncated);
  // Untouched, it still opens (nothing above moved the window).
  EXPECT_EQ(rx.open(sealed, 7).kind, Opened::Kind::kOpened);
}

TEST(FrameCrypto, RotationOpensWithEveryAcceptedKeyAndOnlyThose) {
  auto [a, b] = two_keys();
  FrameCrypto tx("", 1400, 16), rx("", 1400, 16);
  ASSERT_TRUE(tx.keyring().install(a).is_ok());
  ASSERT_TRUE(tx.set_mode(EncryptionMode::kSend).is_ok());
  ASSERT_TRUE(rx.keyring().install(b).is_ok());
  ASSERT_TRUE(rx.set_mode(EncryptionMode::kRequire).is_ok());
  tx.start(1);
  EXPECT_EQ(rx.open(seal(tx, plaintext_datagram("", 9, "1")), 9).kind, Opened::Kind::kUnknownKey);
  ASSERT_TRUE(rx.keyring().install(a).is_ok());  // accepted, not primary
  EXPECT_EQ(rx.open(seal(tx, plaintext_datagram("", 9, "2")), 9).kind, Opened::Kind::kOpened);
  ASSERT_TRUE(tx.keyring().install(b).is_ok());
  ASSERT_TRUE(tx.keyring().use(b).is_ok());
  EXPECT_EQ(rx.open(seal(tx, plaintext_datagram("", 9, "3")), 9).kind, Opened::Kind::kOpened);
  // The sender seals with b now: removing a on the receiver changes nothing for it.
  EXPECT_EQ(tx.remove_key(b).code(), Code::kInvalidArgument);  // primary while sealing
  ASSERT_TRUE(tx.remove_key(a).is_ok());
  ASSERT_TRUE(rx.remove_key(a).is_ok());
  EXPECT_EQ(rx.open(seal(tx, plaintext_datagram("", 9, "4")), 9).kind, Opened::Kind::kOpened);
  // Sending needs a primary key.
  FrameCrypto none("", 1400, 16);
  EXPECT_EQ(none.set_mode(EncryptionMode::kSend).code(), Code::kInvalidArgument);
  EXPECT_TRUE(none.set_mode(EncryptionMode::kAccept).is_ok());
}

TEST(FrameCrypto, ReplayWindowsAreBoundedAndARestartedSenderIsAccepted) {
  const std::string a = key_of('a');
  FrameCrypto rx("", 1400, 4);
  ASSERT_TRUE(rx.keyring().install(a).is_ok());
  ASSERT_TRUE(rx.set_mode(EncryptionMode::kRequire).is_ok());
  for (NodeId sender = 1; sender <= 50; ++sender) {
    FrameCrypto tx("", 1400, 4);
    ASSERT_TRUE(tx.keyring().install(a).is_ok());
    ASSERT_TRUE(tx.set_mode(EncryptionMode::kRequire).is_ok());
    tx.start(1000);
    EXPECT_EQ(rx.open(seal(tx, plaintext_datagram("", sender, "m")), sender).kind,
              Opened::Kind::kOpened);
    EXPECT_LE(rx.senders_tracked(), 4u * FrameCrypto::kStreamsPerSender);
  }
  // A sender that restarts later starts above its old sequence numbers.
  FrameCrypto before("", 1400, 4), after("", 1400, 4);
  for (FrameCrypto* f : {&before, &after}) {
    ASSERT_TRUE(f->keyring().install(a).is_ok());
    ASSERT_TRUE(f->set_mode(EncryptionMode::kRequire).is_ok());
  }
  before.start(5000);
  std::vector<std::byte> old;
  for (int i = 0; i < 100; ++i) {
    old = seal(before, plaintext_datagram("", 77, "m"));
    ASSERT_EQ(rx.open(old, 77).kind, Opened::Kind::kOpened);
  }
  after.start(5001);
  EXPECT_EQ(rx.open(seal(after, plaintext_datagram("", 77, "m")), 77).kind, Opened::Kind::kOpened);
  EXPECT_EQ(rx.open(old, 77).kind, Opened::Kind::kReplayed);
}

TEST(FrameCrypto, EachCoreOfASenderIsAStreamWithItsOwnWindow) {
  // Two cores of one node seal with their own sequence numbers, one far ahead of the other
  // (their clocks started apart): each stream keeps its own window, so neither looks old.
  const std::string a = key_of('a');
  FrameCrypto rx("", 1400, 4), core0("", 1400, 4, system_entropy(), 0),
      core1("", 1400, 4, system_entropy(), 1);
  for (FrameCrypto* f : {&rx, &core0, &core1}) {
    ASSERT_TRUE(f->keyring().install(a).is_ok());
    ASSERT_TRUE(f->set_mode(EncryptionMode::kRequire).is_ok());
  }
  core0.start(1000);
  core1.start(9000);
  std::vector<std::vector<std::byte>> sent;
  for (int i = 0; i < 3000; ++i) {
    FrameCrypto& tx = i % 3 == 0 ? core0 : core1;
    sent.push_back(seal(tx, plaintext_datagram("", 42, "m" + std::to_string(i))));
    ASSERT_EQ(rx.open(sent.back(), 42).kind, Opened::Kind::kOpened) << i;
  }
  EXPECT_EQ(rx.senders_tracked(), 2u);
  // Every frame of either stream is refused a second time, recent or old.
  for (const auto& f : {sent[0], sent[1], sent[2998], sent[2999]}) {
    EXPECT_EQ(rx.open(f, 42).kind, Opened::Kind::kReplayed);
  }
  // The stream byte is authenticated: moving a frame to the other stream fails.
  std::vector<std::byte> moved = sent[2999];
  moved[kHeaderBytes + 1 + kSaltBytes - 1] ^= std::byte{1};
  EXPECT_EQ(rx.open(moved, 42).kind, Opened::Kind::kAuthFailed);
}

TEST(FrameCrypto, AnotherCoreAdoptsTheKeysAndModeAndSealsWithItsOwnNonces) {
  auto [a, b] = two_keys();
  FrameCrypto home("prod", 1400, 16, system_entropy(), 0), other("prod", 1400, 16,
                                                                  system_entropy(), 1);
  ASSERT_TRUE(home.keyring().install(a).is_ok());
  ASSERT_TRUE(home.keyring().install(b).is_ok());
  ASSERT_TRUE(home.keyring().use(key_fingerprint(b)).is_ok());
  ASSERT_TRUE(home.set_mode(EncryptionMode::kRequire).is_ok());
  const std::shared_ptr<const KeyState> state = home.key_state();
  // The copy is a snapshot: a later change at home does not reach it.
  ASSERT_TRUE(home.keyring().use(key_fingerprint(a)).is_ok());
  other.adopt(*state);
  EXPECT_EQ(other.mode(), EncryptionMode::kRequire);
  ASSERT_EQ(other.keyring().list().size(), 2u);
  EXPECT_EQ(other.keyring().primary_id(), home.keyring().list()[1].id);
  home.start(1000);
  other.start(1000);
  // Same start time, same sequence numbers: the salts (and stream bytes) still differ.
  const auto from_home = seal(home, plaintext_datagram("prod", 5, "x"));
  const auto from_other = seal(other, plaintext_datagram("prod", 5, "x"));
  EXPECT_NE(std::memcmp(from_home.data() + kHeaderBytes + 1, from_other.data() + kHeaderBytes + 1,
                        kNonceBytes),
            0);
  EXPECT_EQ(static_cast<std::uint8_t>(from_other[kHeaderBytes + kSaltBytes]), 1);
  FrameCrypto rx("prod", 1400, 16);
  rx.adopt(*state);
  EXPECT_EQ(rx.open(from_home, 5).kind, Opened::Kind::kOpened);
  EXPECT_EQ(rx.open(from_other, 5).kind, Opened::Kind::kOpened);
}

}  // namespace
}  // namespace rumor::crypto
