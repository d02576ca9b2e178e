// Fuzz target: the sealed frame (engine/crypto) in front of a node in `require` mode.
// Byte 0 picks what the rest is:
//   even: a raw datagram from the network. Junk, forged or truncated frames must be refused
//         (flags, key id, length, tag, replay) and counted, never reach a message decoder.
//   odd:  the messages of a datagram that a key holder seals and sends (bytes 1-2 pick the
//         shard, 3-10 the sender id), so the fuzzer also explores every decoder behind the seal.
// Under non-fuzz presets the committed corpus replays through this as a regression test.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "tests/fuzz/fuzz_node.h"

namespace {

const std::string kKey(rumor::kKeyBytes, 'k');

rumor::NodeConfig sealed_config() {
  rumor::NodeConfig cfg = rumor::NodeConfig::local();
  cfg.cluster_label = "fuzz";
  cfg.keys = {kKey};
  cfg.encryption = rumor::EncryptionMode::kRequire;
  return cfg;
}

// A key holder that seals what the fuzzer writes.
struct Sender {
  rumor::crypto::FrameCrypto crypto{"fuzz", 1400, 64};
  Sender() {
    (void)crypto.keyring().install(kKey);
    (void)crypto.set_mode(rumor::EncryptionMode::kRequire);
    crypto.start(1'764'000'000'000);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static rumor::fuzz::FuzzNode t(sealed_config());
  static Sender sender;
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    t.feed(std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1));
    return 0;
  }
  if (size < 11) return 0;
  const auto shard = static_cast<std::uint16_t>(data[1] << 8 | data[2]);
  std::uint64_t id = 0;
  std::memcpy(&id, data + 3, 8);
  std::span<const std::uint8_t> messages(data + 11, size - 11);
  const std::size_t room = 1400 - rumor::crypto::kSealOverheadBytes - rumor::wire::kHeaderBytes;
  if (messages.size() > room) messages = messages.first(room);
  std::vector<std::byte> d(1400);
  rumor::wire::Writer w(d);
  rumor::wire::write_header(w, rumor::wire::Header{shard, rumor::wire::label_hash("fuzz"), id});
  w.bytes(messages.data(), messages.size());
  const std::size_t len = sender.crypto.seal(d, w.size());
  t.feed(std::span<const std::byte>(d).first(len));
  return 0;
}
