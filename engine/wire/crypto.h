// The seal/open layer at the datagram boundary (docs/security.md is the spec).
//
// A node builds every datagram in plaintext (engine/wire/wire.h); when it sends sealed, seal() turns
// the buffer into a sealed frame in place just before the datagram is committed, and open()
// turns a received frame back into plaintext messages before any message is decoded. The
// 20-byte header stays in clear, so the reuseport BPF program can still read the shard id at
// byte 4; the header, the key-id byte and the whole cluster label are the associated data, so a
// changed header, key id or label fails authentication.
//
//   sealed frame = header(20, flags bit 0 set) key_id:u8 nonce:24 ciphertext tag:16
//   nonce        = salt:15 (random per FrameCrypto) stream:u8 seq:u64 (little-endian)
//
// Every owner core of a node seals with a FrameCrypto of its own: its own salt, its own
// sequence numbers, and `stream` = its core index. `seq` starts at (start time in ms) << 20 so a
// restarted node continues above what it sent before, and the receiver keeps a sliding window
// per (sender, stream) (ReplayWindow) that refuses a sequence number it has seen or one too old
// to judge. Each receiving core keeps its own windows: a sealed frame names its target shard in
// the authenticated header, so a copy always reaches the same core.
//
// Thread-safety: none. A FrameCrypto belongs to one core's driver thread; a node's keyring
// changes are made on the home core and reach the others as an immutable KeyState copy over
// the cores' links (engine/node/cores.cc), adopted on their own threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/entropy.h"
#include "rumor/security.h"
#include "rumor/status.h"
#include "rumor/version.h"

namespace rumor::crypto {

inline constexpr std::uint8_t kFlagSealed = 0x01;
inline constexpr std::uint8_t kFlagsKnown = kFlagSealed;
inline constexpr std::size_t kHeaderBytes = 20;  // engine/wire/wire.h kHeaderBytes, checked in .cc
inline constexpr std::size_t kSaltBytes = 16;
inline constexpr std::size_t kNonceBytes = 24;
inline constexpr std::size_t kTagBytes = 16;
inline constexpr std::size_t kSealPrefixBytes = 1 + kNonceBytes;  // key id, nonce
// What sealing adds to a datagram. Every datagram is built this much below
// datagram_bytes_max, sealed or not, so turning encryption on at run time never overflows.
inline constexpr std::size_t kSealOverheadBytes = kSealPrefixBytes + kTagBytes;  // 41
inline constexpr std::size_t kLabelBytesMax = 255;
static_assert(kSaltBytes + sizeof(std::uint64_t) == kNonceBytes);

// One primary key (seals what this node sends) and up to kKeysMax accepted keys (open what it
// receives). Keys are found by their id byte in O(1); two keys whose fingerprints share the
// first byte cannot be held at once (install refuses the second: generate another key).
class Keyring {
 public:
  Keyring();
  ~Keyring();
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

  // Installs a raw 32-byte key as an accepted key (the first one also becomes primary).
  // Installing a key already held is a no-op.
  Status install(std::string_view raw);
  // Makes a held key the primary. `ref` is a fingerprint (as list() shows) or a raw key.
  Status use(std::string_view ref);
  // Forgets a key (its bytes are wiped). The primary only goes when `allow_primary` (nothing is
  // sealed with it any more); the keyring then has no primary until the next install or use.
  Status remove(std::string_view ref, bool allow_primary);

  // Replaces this keyring's keys with copies of `other`'s (the old ones are wiped).
  void assign(const Keyring& other);

  // The key with this id, or null.
  const std::uint8_t* find(std::uint8_t id) const;
  bool has_primary() const { return primary_ >= 0; }
  std::uint8_t primary_id() const;
  const std::uint8_t* primary_key() const;
  std::vector<KeyInfo> list() const;
  std::size_t size() const { return keys_.size(); }

 private:
  struct Key {
    std::uint8_t id = 0;
    std::array<std::uint8_t, kKeyBytes> bytes{};
    std::string fingerprint;
  };
  int index_of(std::string_view ref) const;  // -1 when not held
  void reindex();
  std::vector<Key> keys_;
  int primary_ = -1;                   // index into keys_
  std::array<std::int8_t, 256> by_id_;  // index into keys_, -1 for none
};

// Anti-replay for one sender: the highest sequence number accepted and a bitmap of the kBits
// below it (IPsec / WireGuard style). A number is fresh if above the top, or within the window
// and not yet seen. check() before the (costly) authentication, accept() only after it.
class ReplayWindow {
 public:
  static constexpr std::uint64_t kBits = 1024;
  bool check(std::uint64_t seq) const;
  void accept(std::uint64_t seq);
  std::uint64_t top() const { return top_; }

 private:
  static constexpr std::size_t kWords = kBits / 64;
  bool bit(std::uint64_t seq) const { return (bits_[(seq / 64) % kWords] >> (seq % 64)) & 1u; }
  std::uint64_t top_ = 0;
  std::array<std::uint64_t, kWords> bits_{};
};

struct Opened {
  enum class Kind : std::uint8_t {
    kPlain,             // a plaintext frame this node accepts
    kOpened,            // a sealed frame, authenticated and decrypted
    kBadFlags,          // flag bits this version does not know
    kTruncated,         // sealed, but shorter than its prefix and tag
    kSealedRefused,     // sealed, and this node's mode is off
    kUnknownKey,        // sealed under a key id this node does not hold
    kAuthFailed,        // the tag does not verify (wrong key, label, header, or tampering)
    kReplayed,          // authentic, but this sender's sequence number was seen or is too old
    kPlaintextRefused,  // plaintext, and this node's mode is require
  };
  Kind kind = Kind::kPlain;
  std::span<const std::byte> messages;  // the plaintext messages after the header
};

// A node's keys and mode, copied at one moment: what the home core hands the other cores when
// the keyring or the mode changes. Immutable once made; its keyring wipes its keys when freed.
struct KeyState {
  Keyring keyring;
  EncryptionMode mode = EncryptionMode::kOff;
};

class FrameCrypto {
 public:
  // `senders_max` bounds the replay windows kept (one per authenticated sender and stream,
  // kStreamsPerSender per sender on average). `entropy` salts the nonces (the node hands in its
  // own; tests take the system's). `stream` names this sender's sequence (its core index).
  FrameCrypto(std::string_view cluster_label, std::size_t datagram_bytes_max,
              std::size_t senders_max, EntropySource& entropy = system_entropy(),
              std::uint8_t stream = 0);
  static constexpr std::size_t kStreamsPerSender = 4;

  // A copy of the keys and mode, to hand to another core; and taking one over.
  std::shared_ptr<const KeyState> key_state() const;
  void adopt(const KeyState& state);

  Keyring& keyring() { return keyring_; }
  const Keyring& keyring() const { return keyring_; }
  // Refuses kSend and kRequire without a primary key.
  Status set_mode(EncryptionMode mode);
  EncryptionMode mode() const { return mode_; }
  // Refuses removing the primary key while this node seals (kSend, kRequire).
  Status remove_key(std::string_view ref);

  // The first sequence number: now_ms << 20, above anything sent before a restart unless the
  // clock went back or the node averaged more than 2^20 datagrams per millisecond.
  void start(std::uint64_t now_ms);
  bool sealing() const { return mode_ >= EncryptionMode::kSend && keyring_.has_primary(); }

  // Seals in place: `buf` holds a header and plaintext messages in its first `len` bytes and
  // has at least len + kSealOverheadBytes. Returns the sealed length.
  std::size_t seal(std::span<std::byte> buf, std::size_t len);
  // Opens a received datagram whose header was read (sender id included). The messages of a
  // sealed frame are decrypted into an internal buffer that stays valid until the next open().
  Opened open(std::span<const std::byte> datagram, NodeId sender) {
    return open(datagram, sender, plain_);
  }
  // The same, decrypting into `out` (at least the datagram's size), which the caller keeps:
  // a receive batch opens every frame into its own part of one buffer, so the entries of the
  // whole batch can merge together.
  Opened open(std::span<const std::byte> datagram, NodeId sender, std::span<std::byte> out);

  std::size_t senders_tracked() const { return windows_.size(); }  // (sender, stream) pairs

 private:
  std::size_t associated_data(std::span<const std::byte> frame, std::uint8_t* ad) const;
  Keyring keyring_;
  EncryptionMode mode_ = EncryptionMode::kOff;
  std::string label_;
  std::array<std::uint8_t, kSaltBytes> salt_{};
  std::uint64_t seq_ = 1;
  std::vector<std::byte> plain_;  // open()'s output
  std::size_t windows_max_;
  struct StreamKey {
    NodeId sender;
    std::uint8_t stream;
    bool operator==(const StreamKey&) const = default;
  };
  struct StreamHash {
    std::size_t operator()(const StreamKey& k) const {
      return std::hash<std::uint64_t>{}(k.sender * 0x9e3779b97f4a7c15ull + k.stream);
    }
  };
  std::unordered_map<StreamKey, ReplayWindow, StreamHash> windows_;
};

}  // namespace rumor::crypto
