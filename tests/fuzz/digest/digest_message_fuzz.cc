// parse_message on arbitrary bytes, then every view of every record read as a consumer would:
// under ASan/UBSan a read outside the message or an overflow is a crash.
#include <cstdint>
#include <span>

#include "digest/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor::digest;
  MsgHeader h;
  std::uint64_t sink = 0;
  const rumor::Status s =
      parse_message(std::span(data, size), DecodeLimits{}, &h, [&](const Record& r) {
        for (std::uint32_t i = 0; i < r.hashes.n; ++i) sink += r.hashes.at(i);
        for (std::uint32_t i = 0; i < r.items.n; ++i) sink += r.items.at(i).hlc;
        for (std::uint32_t i = 0; i < r.kfps.n; ++i) sink += r.kfps.at(i);
        for (std::uint32_t i = 0; i < r.want.n; ++i) sink += r.want.test(i);
        for (std::uint32_t i = 0; i < r.covered.n; ++i) sink += r.covered.test(i);
        if (r.bloom.valid()) sink += r.bloom.may_contain(sink);
        r.entries.for_each([&](const EntryRef& e) { sink += e.key.size() + e.value.size(); });
        r.subs.for_each([&](const SubRecord& sub) {
          for (std::uint32_t i = 0; i < sub.hashes.n; ++i) sink += sub.hashes.at(i);
          for (std::uint32_t i = 0; i < sub.items.n; ++i) sink += sub.items.at(i).kfp;
          if (sub.bloom.valid()) sink += sub.bloom.may_contain(sink);
        });
      });
  (void)s;
  return sink == 0x5eed ? 0 : 0;
}
