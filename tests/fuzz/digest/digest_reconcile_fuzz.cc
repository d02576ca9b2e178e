// Arbitrary datagrams into both reconciliation roles over small stores: the responder answers
// what decodes (and its answers must decode), the session (with its roots request in flight, as
// session 1) takes it as a response and goes on. Nothing may crash or assert.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "engine/sync/reconcile.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rumor;
  ManualTimeSource time(1'000'000'000);
  StoreConfig sc;
  sc.virtual_shards = 4;
  auto store = std::move(Store::create(sc, 1, time).value());
  for (int i = 0; i < 40; ++i) {
    (void)store->set("key-" + std::to_string(i), std::string(static_cast<std::size_t>(i), 'v'));
  }
  (void)store->del("key-3");
  ReconcileConfig cfg = ReconcileConfig::for_store(sc);
  cfg.tree.depth_max = 2;  // small shards reach depth_max: bloom paths too
  cfg.list_items_max = 4;
  const std::span<const std::uint8_t> in(data, size);

  ReconcileResponder responder(*store, 0, cfg);
  (void)responder.respond(in, [&](std::span<const std::uint8_t> out) {
    digest::MsgHeader h;
    const Status s = digest::parse_message(out, digest::DecodeLimits{}, &h, nullptr);
    if (!s.is_ok()) __builtin_trap();  // the responder only emits what decodes
  });

  ReconcileSession session(*store, 0, cfg, 1);
  std::vector<std::uint8_t> buf(cfg.datagram_bytes_max);
  (void)session.next_datagram(buf);
  (void)session.on_datagram(in);
  for (int i = 0; i < 4 && session.next_datagram(buf) > 0; ++i) {
  }
  session.on_timeout();
  return 0;
}
