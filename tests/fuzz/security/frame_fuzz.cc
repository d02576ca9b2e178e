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
#include <memory>
#include <span>
#include <vector>

#include "base/clock.h"
#include "engine/crypto.h"
#include "engine/wire.h"
#include "rumor/node.h"

namespace {

const std::string kKey(rumor::kKeyBytes, 'k');

struct DiscardSink final : rumor::PacketSink {
  std::vector<std::byte> buf = std::vector<std::byte>(1400);
  std::span<std::byte> buffer() override { return buf; }
  void commit(const rumor::Address&, std::size_t) override {}
};

struct Target {
  rumor::ManualTimeSource time{1'764'000'000'000};
  DiscardSink sink;
  std::unique_ptr<rumor::Node> node;
  rumor::crypto::FrameCrypto sender{"fuzz", 1400, 64};
  Target() {
    rumor::NodeConfig cfg = rumor::NodeConfig::local();
    cfg.name = "fuzz-target";
    cfg.cluster_label = "fuzz";
    cfg.advertise = rumor::Address::ipv4(0x7f000001, 7946);
    cfg.keys = {kKey};
    cfg.encryption = rumor::EncryptionMode::kRequire;
    node = std::move(rumor::Node::create(cfg, time)).value();
    node->start(sink);
    (void)sender.keyring().install(kKey);
    (void)sender.set_mode(rumor::EncryptionMode::kRequire);
    sender.start(time.now_ms());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Target t;
  static const rumor::Address from = rumor::Address::ipv4(0x7f000002, 7946);
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    t.node->receive(from, std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1),
                    t.sink);
  } else {
    if (size < 11) return 0;
    std::uint16_t shard = static_cast<std::uint16_t>(data[1] << 8 | data[2]);
    std::uint64_t sender = 0;
    std::memcpy(&sender, data + 3, 8);
    std::span<const std::uint8_t> messages(data + 11, size - 11);
    const std::size_t room = 1400 - rumor::crypto::kSealOverheadBytes - rumor::wire::kHeaderBytes;
    if (messages.size() > room) messages = messages.first(room);
    std::vector<std::byte> d(1400);
    rumor::wire::Writer w(d);
    rumor::wire::write_header(w, rumor::wire::Header{shard, rumor::wire::label_hash("fuzz"), sender});
    w.bytes(messages.data(), messages.size());
    const std::size_t len = t.sender.seal(d, w.size());
    t.node->receive(from, std::span(d).first(len), t.sink);
  }
  t.time.advance(7);
  t.node->tick(t.sink);
  t.node->dispatch_events();
  return 0;
}
