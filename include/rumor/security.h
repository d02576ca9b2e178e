// Datagram encryption and the keyring, as the embedding application sees them
// (docs/security.md has the frame, the migration and the rotation procedures).
//
// Every datagram can be sealed with XChaCha20-Poly1305 (libsodium) under a 32-byte shared key.
// A node holds a keyring: one primary key that seals what it sends, and up to kKeysMax keys it
// accepts. The mode says what a node sends and what it accepts, so a running cluster can move
// from plaintext to encryption (and keys can rotate) without stopping any node.
//
// Thread-safety: these are plain functions and values, safe from any thread. The keyring of a
// running node is changed through rumor::Node (include/rumor/node.h says from which thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "rumor/status.h"

namespace rumor {

// What a node sends and what it accepts. Migration plaintext -> encrypted goes up this list one
// step at a time on every node (each step only once every node has made the previous one):
enum class EncryptionMode : std::uint8_t {
  kOff = 0,      // sends plaintext; drops sealed datagrams. The default.
  kAccept = 1,   // sends plaintext; opens sealed datagrams too (step 1: keys installed)
  kSend = 2,     // sends sealed; still accepts plaintext (step 2)
  kRequire = 3,  // sends sealed; drops plaintext (step 3: the cluster is encrypted)
};
std::string_view encryption_mode_name(EncryptionMode m);
Result<EncryptionMode> parse_encryption_mode(std::string_view name);

inline constexpr std::size_t kKeyBytes = 32;
inline constexpr std::size_t kKeysMax = 16;

// A key as the keyring lists it: never the key itself.
struct KeyInfo {
  std::uint8_t id = 0;      // the key-id byte in the frame: the fingerprint's first byte
  std::string fingerprint;  // 16 hex digits of BLAKE2b(key)
  bool primary = false;
};

// Keys travel as standard base64 of their 32 bytes (as serf and memberlist do).
Result<std::string> decode_key(std::string_view base64);
std::string encode_key(std::string_view raw);
// 32 random bytes from the operating system's CSPRNG (libsodium randombytes).
std::string generate_key();
// The fingerprint of a raw key (what KeyInfo shows and what use/remove accept).
std::string key_fingerprint(std::string_view raw);

}  // namespace rumor
