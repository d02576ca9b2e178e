// The cost of sealing (docs/security.md): one 1,200-byte datagram built, sealed, opened by a
// receiver and read, against the same datagram built and read in plaintext through the same
// open() path (mode off). Read the two as a ratio: run both from one binary invocation.
//
//   build/release/bench/rumor-bench --benchmark_filter='BM_Frame' --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "engine/wire/crypto.h"
#include "engine/wire/wire.h"

namespace {

using rumor::crypto::FrameCrypto;

const std::string kKey(rumor::kKeyBytes, 'k');

void run(benchmark::State& state, bool sealed) {
  const auto payload_bytes = static_cast<std::size_t>(state.range(0));
  FrameCrypto tx("prod", 1500, 64), rx("prod", 1500, 64);
  if (sealed) {
    for (FrameCrypto* f : {&tx, &rx}) {
      (void)f->keyring().install(kKey);
      (void)f->set_mode(rumor::EncryptionMode::kRequire);
    }
  }
  tx.start(1'764'000'000'000);
  std::vector<std::byte> payload(payload_bytes);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::byte>(i * 131);
  std::vector<std::byte> buf(payload_bytes + rumor::wire::kHeaderBytes +
                             rumor::crypto::kSealOverheadBytes);
  const std::uint32_t label = rumor::wire::label_hash("prod");
  std::uint64_t sum = 0;
  for (auto _ : state) {
    rumor::wire::Writer w(buf);
    rumor::wire::write_header(w, rumor::wire::Header{3, label, 7});
    w.bytes(payload.data(), payload.size());
    std::size_t len = w.size();
    if (sealed) len = tx.seal(buf, len);
    const auto o = rx.open(std::span<const std::byte>(buf).first(len), 7);
    if (o.messages.size() != payload_bytes) state.SkipWithError("open failed");
    sum += static_cast<std::uint8_t>(o.messages[o.messages.size() - 1]);
    benchmark::DoNotOptimize(sum);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload_bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_FramePlain(benchmark::State& state) { run(state, false); }
void BM_FrameSealOpen(benchmark::State& state) { run(state, true); }

BENCHMARK(BM_FramePlain)->Arg(1200)->Arg(64);
BENCHMARK(BM_FrameSealOpen)->Arg(1200)->Arg(64);

}  // namespace
