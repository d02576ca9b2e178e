#include "engine/wire/crypto.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "base/entropy.h"
#include "engine/wire/wire.h"

namespace rumor {

namespace {
// sodium_init() is idempotent and thread-safe; every entry point that needs the library (the
// CSPRNG, the keyring's hashing) calls it through this once.
void ensure_sodium() {
  static const int rc = sodium_init();
  RUMOR_ASSERT(rc >= 0);  // only fails where no entropy source exists at all
}
}  // namespace

std::string_view encryption_mode_name(EncryptionMode m) {
  switch (m) {
    case EncryptionMode::kOff: return "off";
    case EncryptionMode::kAccept: return "accept";
    case EncryptionMode::kSend: return "send";
    case EncryptionMode::kRequire: return "require";
  }
  return "unknown";
}

Result<EncryptionMode> parse_encryption_mode(std::string_view name) {
  for (auto m : {EncryptionMode::kOff, EncryptionMode::kAccept, EncryptionMode::kSend,
                 EncryptionMode::kRequire}) {
    if (name == encryption_mode_name(m)) return m;
  }
  return Status::error(Code::kInvalidArgument,
                       "encryption mode '" + std::string(name) +
                           "' is not one of off, accept, send, require");
}

Result<std::string> decode_key(std::string_view base64) {
  ensure_sodium();
  std::string raw(kKeyBytes + 8, '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(raw.data()), raw.size(), base64.data(),
                        base64.size(), " \t\r\n", &len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != base64.data() + base64.size()) {
    return Status::error(Code::kInvalidArgument, "a key is standard base64 of 32 bytes "
                                                 "(`rumor keys generate` makes one)");
  }
  if (len != kKeyBytes) {
    return Status::error(Code::kInvalidArgument, "a key is 32 bytes, this one decodes to " +
                                                     std::to_string(len));
  }
  raw.resize(len);
  return raw;
}

std::string encode_key(std::string_view raw) {
  ensure_sodium();
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()),
                    raw.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string generate_key() {
  ensure_sodium();
  std::string raw(kKeyBytes, '\0');
  system_entropy().fill(std::as_writable_bytes(std::span(raw.data(), raw.size())));
  return raw;
}

std::string key_fingerprint(std::string_view raw) {
  ensure_sodium();
  unsigned char h[8];
  // A domain-separated hash: the fingerprint says nothing usable about the key itself.
  static constexpr unsigned char kPersonal[] = "rumor-key-id";
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof h);
  crypto_generichash_update(&st, kPersonal, sizeof kPersonal);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  crypto_generichash_final(&st, h, sizeof h);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : h) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

namespace crypto {

static_assert(kHeaderBytes == wire::kHeaderBytes);
static_assert(kNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(kTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kKeysMax <= 127, "by_id_ holds indices as int8");

// ---- Keyring ------------------------------------------------------------------------------

Keyring::Keyring() { by_id_.fill(-1); }

Keyring::~Keyring() {
  for (Key& k : keys_) sodium_memzero(k.bytes.data(), k.bytes.size());
}

void Keyring::reindex() {
  by_id_.fill(-1);
  for (std::size_t i = 0; i < keys_.size(); ++i) by_id_[keys_[i].id] = static_cast<std::int8_t>(i);
}

int Keyring::index_of(std::string_view ref) const {
  const std::string fp = ref.size() == kKeyBytes ? key_fingerprint(ref) : std::string(ref);
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    if (keys_[i].fingerprint == fp) return static_cast<int>(i);
  }
  return -1;
}

Status Keyring::install(std::string_view raw) {
  if (raw.size() != kKeyBytes) {
    return Status::error(Code::kInvalidArgument,
                         "a key is 32 bytes, got " + std::to_string(raw.size()));
  }
  const std::string fp = key_fingerprint(raw);
  if (index_of(fp) >= 0) return Status::ok();
  if (keys_.size() >= kKeysMax) {
    return Status::error(Code::kTooLarge, "the keyring holds " + std::to_string(kKeysMax) +
                                              " keys already: remove one first");
  }
  Key k;
  k.id = static_cast<std::uint8_t>(std::stoul(fp.substr(0, 2), nullptr, 16));
  if (by_id_[k.id] >= 0) {
    return Status::error(Code::kInvalidArgument,
                         "key " + fp + " has the same key id as held key " +
                             keys_[static_cast<std::size_t>(by_id_[k.id])].fingerprint +
                             ": generate another key");
  }
  std::memcpy(k.bytes.data(), raw.data(), kKeyBytes);
  k.fingerprint = fp;
  keys_.push_back(std::move(k));
  reindex();
  if (primary_ < 0) primary_ = static_cast<int>(keys_.size() - 1);
  return Status::ok();
}

Status Keyring::use(std::string_view ref) {
  const int i = index_of(ref);
  if (i < 0) return Status::error(Code::kNotFound, "no such key in the keyring (install it first)");
  primary_ = i;
  return Status::ok();
}

Status Keyring::remove(std::string_view ref, bool allow_primary) {
  const int i = index_of(ref);
  if (i < 0) return Status::error(Code::kNotFound, "no such key in the keyring");
  if (i == primary_ && !allow_primary) {
    return Status::error(Code::kInvalidArgument,
                         "key " + keys_[static_cast<std::size_t>(i)].fingerprint +
                             " is the primary key: use another key first");
  }
  const bool was_primary = i == primary_;
  const std::uint8_t primary_id_before = primary_id();
  sodium_memzero(keys_[static_cast<std::size_t>(i)].bytes.data(), kKeyBytes);
  keys_.erase(keys_.begin() + i);
  reindex();
  primary_ = was_primary || primary_ < 0 ? -1 : by_id_[primary_id_before];
  return Status::ok();
}

void Keyring::assign(const Keyring& other) {
  if (this == &other) return;
  for (Key& k : keys_) sodium_memzero(k.bytes.data(), k.bytes.size());
  keys_ = other.keys_;
  primary_ = other.primary_;
  by_id_ = other.by_id_;
}

const std::uint8_t* Keyring::find(std::uint8_t id) const {
  const int i = by_id_[id];
  return i < 0 ? nullptr : keys_[static_cast<std::size_t>(i)].bytes.data();
}

std::uint8_t Keyring::primary_id() const {
  return primary_ < 0 ? 0 : keys_[static_cast<std::size_t>(primary_)].id;
}

const std::uint8_t* Keyring::primary_key() const {
  return primary_ < 0 ? nullptr : keys_[static_cast<std::size_t>(primary_)].bytes.data();
}

std::vector<KeyInfo> Keyring::list() const {
  std::vector<KeyInfo> out;
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    out.push_back(KeyInfo{keys_[i].id, keys_[i].fingerprint, static_cast<int>(i) == primary_});
  }
  return out;
}

// ---- ReplayWindow ------------------------------------------------------------------------

bool ReplayWindow::check(std::uint64_t seq) const {
  if (seq > top_) return true;
  if (top_ - seq >= kBits) return false;  // too old to tell: refused
  return !bit(seq);
}

void ReplayWindow::accept(std::uint64_t seq) {
  if (seq > top_) {
    // Clear the slots between the old top and the new one (they are not seen yet); at most the
    // whole window.
    const std::uint64_t gap = seq - top_;
    if (gap >= kBits) {
      bits_.fill(0);
    } else {
      for (std::uint64_t s = top_ + 1; s <= seq; ++s) {
        bits_[(s / 64) % kWords] &= ~(std::uint64_t{1} << (s % 64));
      }
    }
    top_ = seq;
  }
  bits_[(seq / 64) % kWords] |= std::uint64_t{1} << (seq % 64);
}

// ---- FrameCrypto -------------------------------------------------------------------------

FrameCrypto::FrameCrypto(std::string_view cluster_label, std::size_t datagram_bytes_max,
                         std::size_t senders_max, EntropySource& entropy,
                         std::uint8_t stream)
    : label_(cluster_label.substr(0, kLabelBytesMax)),
      plain_(datagram_bytes_max),
      windows_max_(std::max<std::size_t>(senders_max, 1) * kStreamsPerSender) {
  ensure_sodium();
  // The salt makes nonces unique across nodes, cores and restarts of one node even if its clock
  // went back: the sequence number alone is unique only per stream and clock.
  entropy.fill(std::as_writable_bytes(std::span(salt_)));
  salt_[kSaltBytes - 1] = stream;
}

std::shared_ptr<const KeyState> FrameCrypto::key_state() const {
  auto s = std::make_shared<KeyState>();
  s->keyring.assign(keyring_);
  s->mode = mode_;
  return s;
}

void FrameCrypto::adopt(const KeyState& state) {
  keyring_.assign(state.keyring);
  mode_ = state.mode;
}

Status FrameCrypto::set_mode(EncryptionMode mode) {
  if (mode >= EncryptionMode::kSend && !keyring_.has_primary()) {
    return Status::error(Code::kInvalidArgument, std::string("encryption mode ") +
                                                     std::string(encryption_mode_name(mode)) +
                                                     " needs a key: install one first");
  }
  mode_ = mode;
  return Status::ok();
}

Status FrameCrypto::remove_key(std::string_view ref) {
  return keyring_.remove(ref, /*allow_primary=*/mode_ < EncryptionMode::kSend);
}

void FrameCrypto::start(std::uint64_t now_ms) { seq_ = std::max(seq_, (now_ms << 20) | 1); }

std::size_t FrameCrypto::associated_data(std::span<const std::byte> frame,
                                         std::uint8_t* ad) const {
  std::memcpy(ad, frame.data(), kHeaderBytes + 1);  // header and key id
  std::memcpy(ad + kHeaderBytes + 1, label_.data(), label_.size());
  return kHeaderBytes + 1 + label_.size();
}

std::size_t FrameCrypto::seal(std::span<std::byte> buf, std::size_t len) {
  RUMOR_ASSERT(sealing());
  RUMOR_ASSERT(len >= kHeaderBytes);
  RUMOR_ASSERT(len + kSealOverheadBytes <= buf.size());
  auto* p = reinterpret_cast<std::uint8_t*>(buf.data());
  const std::size_t body = len - kHeaderBytes;
  // Make room for key id and nonce between the header and the messages.
  std::memmove(p + kHeaderBytes + kSealPrefixBytes, p + kHeaderBytes, body);
  p[3] |= kFlagSealed;
  p[kHeaderBytes] = keyring_.primary_id();
  std::uint8_t* nonce = p + kHeaderBytes + 1;
  std::memcpy(nonce, salt_.data(), kSaltBytes);
  const std::uint64_t seq = seq_++;
  for (std::size_t i = 0; i < 8; ++i) nonce[kSaltBytes + i] = static_cast<std::uint8_t>(seq >> (8 * i));
  std::uint8_t ad[kHeaderBytes + 1 + kLabelBytesMax];
  const std::size_t ad_len = associated_data(buf, ad);
  std::uint8_t* text = p + kHeaderBytes + kSealPrefixBytes;
  // In place: libsodium's stream ciphers allow the ciphertext to overwrite the message exactly.
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(text, text + body, nullptr, text, body, ad,
                                                      ad_len, nullptr, nonce,
                                                      keyring_.primary_key());
  return len + kSealOverheadBytes;
}

Opened FrameCrypto::open(std::span<const std::byte> datagram, NodeId sender,
                         std::span<std::byte> out_buf) {
  Opened o;
  RUMOR_ASSERT(datagram.size() >= kHeaderBytes);
  const auto flags = static_cast<std::uint8_t>(datagram[3]);
  if (flags & ~kFlagsKnown) {
    o.kind = Opened::Kind::kBadFlags;
    return o;
  }
  if (!(flags & kFlagSealed)) {
    o.kind = mode_ == EncryptionMode::kRequire ? Opened::Kind::kPlaintextRefused
                                               : Opened::Kind::kPlain;
    o.messages = datagram.subspan(kHeaderBytes);
    return o;
  }
  if (mode_ == EncryptionMode::kOff) {
    o.kind = Opened::Kind::kSealedRefused;
    return o;
  }
  if (datagram.size() < kHeaderBytes + kSealOverheadBytes) {
    o.kind = Opened::Kind::kTruncated;
    return o;
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(datagram.data());
  const std::uint8_t* key = keyring_.find(p[kHeaderBytes]);
  if (key == nullptr) {
    o.kind = Opened::Kind::kUnknownKey;
    return o;
  }
  const std::uint8_t* nonce = p + kHeaderBytes + 1;
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < 8; ++i) seq |= std::uint64_t{nonce[kSaltBytes + i]} << (8 * i);
  // Cheap refusal of a replay before the authentication; the window moves only after it. The
  // stream byte is authenticated with the rest of the nonce.
  const StreamKey stream{sender, nonce[kSaltBytes - 1]};
  auto it = windows_.find(stream);
  if (it != windows_.end() && !it->second.check(seq)) {
    o.kind = Opened::Kind::kReplayed;
    return o;
  }
  const std::size_t body = datagram.size() - kHeaderBytes - kSealOverheadBytes;
  if (body > plain_.size() || body > out_buf.size()) {  // larger than this node accepts
    o.kind = Opened::Kind::kTruncated;
    return o;
  }
  std::uint8_t ad[kHeaderBytes + 1 + kLabelBytesMax];
  const std::size_t ad_len = associated_data(datagram, ad);
  const std::uint8_t* text = p + kHeaderBytes + kSealPrefixBytes;
  auto* out = reinterpret_cast<std::uint8_t*>(out_buf.data());
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out, nullptr, text, body, text + body,
                                                          ad, ad_len, nonce, key) != 0) {
    o.kind = Opened::Kind::kAuthFailed;
    return o;
  }
  if (it == windows_.end()) {
    // Bounded: an authenticated sender beyond senders_max evicts another's window (docs/
    // security.md says what that costs).
    if (windows_.size() >= windows_max_) windows_.erase(windows_.begin());
    it = windows_.emplace(stream, ReplayWindow{}).first;
  }
  it->second.accept(seq);
  o.kind = Opened::Kind::kOpened;
  o.messages = std::span<const std::byte>(out_buf.data(), body);
  return o;
}

}  // namespace crypto
}  // namespace rumor
