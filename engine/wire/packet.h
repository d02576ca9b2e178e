// Packet: one datagram being built in a sink buffer. The header first, then messages, then
// (optionally) as many queued broadcasts as still fit, then the seal when the node encrypts.
// Every component that sends (members, gossip, anti-entropy) builds its datagrams through this
// one class, so the header layout, the room kept for the seal and the send counters live here
// only.
//
// Not thread-safe: a Packet lives inside one call on one core's driver thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/assert.h"
#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"
#include "rumor/driver.h"

namespace rumor::wire {

// What every datagram of one node carries, and where it is sealed.
struct Framing {
  std::uint32_t datagram_bytes_max = 0;
  std::uint32_t label_hash = 0;
  NodeId sender = 0;
  // Seals frames when set and sealing; null on cores that send plaintext only.
  crypto::FrameCrypto* crypto = nullptr;
};

// What a datagram's destination is known to hold already (an ack to a ping whose fingerprints
// equal ours: docs/protocol.md "State on every probe"): its member table, its store, or both.
// Queued news of a class it holds is charged as sent to it, and not written: a copy would change
// nothing there, and charging keeps the number of transmissions each item gets the same.
enum Holds : std::uint8_t {
  kHoldsNothing = 0,
  kHoldsMembers = 1,
  kHoldsStore = 2,
};

// Something that appends queued messages into the space a datagram has left (the broadcast
// queue: rumor mongering rides on every packet that has room).
class Piggyback {
 public:
  virtual ~Piggyback() = default;
  // Appends what fits, leaving out (but charging) the classes the destination `holds`; returns
  // how many messages it appended.
  virtual std::size_t fill(Writer& w, Holds holds) = 0;
};

// Where one core sends from: its framing, the driver's sink, its counters, and (on the core
// that gossips) the piggyback source.
struct Outbox {
  const Framing& framing;
  PacketSink& sink;
  NodeCounters& counters;
  Piggyback* piggyback = nullptr;
};

class Packet {
 public:
  explicit Packet(const Outbox& out) : out_(out), w_(std::span<std::byte>()) {}

  // Takes a buffer from the sink and writes the header naming `shard`. False (counted) when the
  // sink has no buffer.
  bool open(std::uint16_t shard = 0) {
    std::span<std::byte> buf = out_.sink.buffer();
    if (buf.empty()) {
      ++out_.counters.sink_full;
      return false;
    }
    const Framing& f = out_.framing;
    if (buf.size() > f.datagram_bytes_max) buf = buf.first(f.datagram_bytes_max);
    // Room for the seal, sealed or not (so the mode can change at any time): every datagram's
    // plaintext is at most datagram_bytes_max - kSealOverheadBytes.
    RUMOR_ASSERT(buf.size() > crypto::kSealOverheadBytes + kHeaderBytes);
    frame_ = buf;
    w_ = Writer(buf.first(buf.size() - crypto::kSealOverheadBytes));
    write_header(w_, Header{shard, f.label_hash, f.sender});
    RUMOR_ASSERT(w_.ok());
    open_ = true;
    return true;
  }
  bool is_open() const { return open_; }
  Writer& w() { return w_; }
  // True when only the header is written.
  bool empty() const { return w_.size() == kHeaderBytes; }

  // Fills the rest with queued broadcasts when `piggyback` (and the outbox has a source), seals,
  // and commits the datagram to `to`.
  // `holds`: what the destination holds already, charged and left out.
  void send(const Address& to, bool piggyback, Holds holds = kHoldsNothing) {
    RUMOR_ASSERT(open_);
    if (piggyback && out_.piggyback) {
      out_.counters.broadcasts_sent += out_.piggyback->fill(w_, holds);
    }
    RUMOR_ASSERT(w_.ok());  // every append checks space; a failed one was rolled back
    std::size_t len = w_.size();
    crypto::FrameCrypto* c = out_.framing.crypto;
    if (c && c->sealing()) {
      len = c->seal(frame_, len);
      ++out_.counters.packets_sealed;
    }
    out_.sink.commit(to, len);
    ++out_.counters.packets_sent;
    out_.counters.bytes_sent += len;
    open_ = false;
  }

 private:
  const Outbox& out_;
  std::span<std::byte> frame_;  // the whole datagram buffer: the writer's part plus the seal's
  Writer w_;
  bool open_ = false;
};

}  // namespace rumor::wire
