// Fuzz target: the agent's configuration decoders (tools/agent_config): TOML text, then every
// line of the input as a `-o section.key=value` override, then validation and the NodeConfig
// check a Node makes. Errors must come back as a Status; nothing may crash or throw.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tools/agent_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // key_file names a file to read: a fuzzer must not open arbitrary paths (a FIFO would block).
  if (text.find("key_file") != std::string_view::npos) return 0;
  rumor::tools::AgentConfig c;
  (void)rumor::tools::apply_toml_text(c, text, "fuzz.toml");
  rumor::tools::AgentConfig o;
  std::string_view rest = text;
  for (int lines = 0; !rest.empty() && lines < 64; ++lines) {
    const std::size_t nl = rest.find('\n');
    (void)rumor::tools::apply_override(o, rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  for (const rumor::tools::AgentConfig* cfg : {&c, &o}) {
    (void)rumor::tools::validate(*cfg);
    (void)cfg->node.validate();
  }
  return 0;
}
