// Little-endian byte writers and bounds-checked readers: the one byte codec of the project.
// Digest messages use it directly; engine/wire/wire.h layers the datagram format on it
// (message framing, length-prefixed strings, addresses).
//
// ByteWriter appends into a caller-owned fixed buffer (a datagram) and never grows it: a put that
// does not fit fails and leaves the writer failed, so a caller packs records, checks ok(), and
// rolls back to a mark when a record did not fit. ByteReader never reads past its span: a get
// past the end fails, returns zero and leaves the reader failed, so a decoder reads a whole
// record and checks ok() once (LevelDB's Slice/GetVarint style, with the check kept on).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace rumor::digest {

// The codec speaks uint8_t; datagrams and sink buffers are std::byte. The one place that
// converts between the two views of the same bytes.
inline std::span<std::uint8_t> as_u8(std::span<std::byte> s) {
  return {reinterpret_cast<std::uint8_t*>(s.data()), s.size()};
}
inline std::span<const std::uint8_t> as_u8(std::span<const std::byte> s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::span<std::byte> as_byte(std::span<std::uint8_t> s) {
  return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}
inline std::span<const std::byte> as_byte(std::span<const std::uint8_t> s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

static_assert(std::endian::native == std::endian::little,
              "the codec stores words with memcpy; a big-endian port must byte-swap here");

class ByteWriter {
 public:
  explicit ByteWriter(std::span<std::uint8_t> buf) : buf_(buf) {}

  bool ok() const { return ok_; }
  std::size_t size() const { return pos_; }
  std::size_t capacity() const { return buf_.size(); }
  std::size_t remaining() const { return ok_ ? buf_.size() - pos_ : 0; }
  std::span<const std::uint8_t> written() const { return buf_.first(pos_); }
  // The whole buffer, for a layer above that patches bytes it wrote earlier (a length filled in
  // once known, a big-endian field).
  std::span<std::uint8_t> buffer() const { return buf_; }
  void fail() { ok_ = false; }

  // Rolling back to a mark also clears a failure that happened after it.
  std::size_t mark() const { return pos_; }
  void rollback(std::size_t mark) {
    pos_ = mark;
    ok_ = true;
  }

  void u8(std::uint8_t v) { put(&v, 1); }
  void u16(std::uint16_t v) { put(&v, 2); }
  void u32(std::uint32_t v) { put(&v, 4); }
  void u64(std::uint64_t v) { put(&v, 8); }
  // The low `n` (1..8) bytes of v.
  void uint_n(std::uint64_t v, std::size_t n) { put(&v, n); }
  void varint(std::uint64_t v) {
    std::uint8_t tmp[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      tmp[n++] = static_cast<std::uint8_t>(v | 0x80);
      v >>= 7;
    }
    tmp[n++] = static_cast<std::uint8_t>(v);
    put(tmp, n);
  }
  void bytes(const void* p, std::size_t n) { put(p, n); }
  // Reserves n bytes to fill later (e.g. a count known only after packing); nullptr on failure.
  std::uint8_t* reserve(std::size_t n) {
    if (!ok_ || buf_.size() - pos_ < n) {
      ok_ = false;
      return nullptr;
    }
    std::uint8_t* p = buf_.data() + pos_;
    pos_ += n;
    return p;
  }

  // For encoders that write into the buffer themselves: the free space, then advance() by how
  // much they used. Advancing past the end fails (and does not move).
  std::span<std::uint8_t> tail() const { return buf_.subspan(pos_); }
  void advance(std::size_t n) {
    if (n > buf_.size() - pos_) {
      ok_ = false;
      return;
    }
    pos_ += n;
  }

  static std::size_t varint_size(std::uint64_t v) {
    std::size_t n = 1;
    while (v >= 0x80) {
      v >>= 7;
      ++n;
    }
    return n;
  }

 private:
  void put(const void* p, std::size_t n) {
    if (!ok_ || buf_.size() - pos_ < n) {
      ok_ = false;
      return;
    }
    if (n) std::memcpy(buf_.data() + pos_, p, n);
    pos_ += n;
  }

  std::span<std::uint8_t> buf_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> buf) : buf_(buf) {}

  bool ok() const { return ok_; }
  bool empty() const { return pos_ == buf_.size(); }
  std::size_t remaining() const { return ok_ ? buf_.size() - pos_ : 0; }
  std::size_t position() const { return pos_; }
  std::size_t size() const { return buf_.size(); }
  void fail() { ok_ = false; }

  std::uint8_t u8() { return get<std::uint8_t>(); }
  std::uint16_t u16() { return get<std::uint16_t>(); }
  std::uint32_t u32() { return get<std::uint32_t>(); }
  std::uint64_t u64() { return get<std::uint64_t>(); }
  std::uint64_t uint_n(std::size_t n) {
    std::uint64_t v = 0;
    if (n > 8 || !take(n)) return 0;
    std::memcpy(&v, buf_.data() + pos_ - n, n);
    return v;
  }
  // LEB128, at most `max_bytes` bytes (5 for 32-bit values); overlong or too long encodings fail.
  std::uint64_t varint(std::size_t max_bytes = 10) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < max_bytes && i < 10; ++i) {
      if (!take(1)) return 0;
      const std::uint8_t b = buf_[pos_ - 1];
      v |= static_cast<std::uint64_t>(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) {
        if (b == 0 && i > 0) break;  // overlong: a trailing zero group
        return v;
      }
    }
    ok_ = false;
    return 0;
  }
  // A view of the next n bytes (empty and failed when fewer remain).
  std::span<const std::uint8_t> bytes(std::size_t n) {
    if (!take(n)) return {};
    return buf_.subspan(pos_ - n, n);
  }
  void skip(std::size_t n) { (void)take(n); }

 private:
  bool take(std::size_t n) {
    if (!ok_ || buf_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  template <typename T>
  T get() {
    T v{};
    if (take(sizeof(T))) std::memcpy(&v, buf_.data() + pos_ - sizeof(T), sizeof(T));
    return v;
  }

  std::span<const std::uint8_t> buf_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace rumor::digest
