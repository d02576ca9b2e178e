// The agent's configuration: a TOML file, then `-o section.key=value` overrides, then flags
// (flags win). Keys are the fields of NodeConfig ([node]), StoreConfig ([store]),
// TransportConfig ([transport]) and ReactorConfig ([reactor]) under their own names, plus the
// agent's own top-level keys. `rumor agent --config-keys` lists them all with their defaults;
// docs/agent.md is generated from that list.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rumor/node.h"
#include "rumor/reactor.h"
#include "rumor/status.h"
#include "tools/log.h"

namespace rumor::tools {

struct AgentConfig {
  std::string preset = "lan";  // lan | wan | local: the NodeConfig timers to start from
  NodeConfig node = NodeConfig::lan();
  ReactorConfig reactor;
  Address bind;                   // gossip (UDP)
  Address advertise;              // what peers send to; default: bind
  std::vector<std::string> join;  // seeds, HOST:PORT (HOST a name or an address)
  // Seeds joined in the background, retried with backoff (Consul's retry_join): the agent serves
  // at once and joins whenever one answers.
  std::vector<std::string> retry_join;
  std::uint64_t retry_interval_ms = 1000;       // first wait between attempts; doubles...
  std::uint64_t retry_interval_max_ms = 30'000;  // ...up to this
  std::uint32_t retry_max = 0;                  // failed attempts before exiting (0: never)
  // Tags, KEY=VALUE: gossiped as this node's metadata (encoded by encode_tags), changed at run
  // time with `rumor tags set|del`. Exclusive with free-form metadata.
  std::vector<std::string> tags;
  Address admin;                  // admin (TCP, loopback only)
  std::optional<Address> metrics;  // Prometheus (HTTP)
  std::uint32_t cores = 1;
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  std::uint64_t join_timeout_ms = 10'000;  // give up when no seed answers for this long
  std::string ready_file;  // written (atomically) once the agent serves, for scripts and tests
  // Durability (include/rumor/durable.h): off when data_dir is empty.
  std::string data_dir;
  std::string sync = "batch";             // always | batch | off
  std::uint32_t sync_interval_ms = 100;   // batch: the loss window; off: commit interval
  std::uint32_t watch_queue_depth = 4096;   // changes buffered for `rumor watch` streams
  std::uint32_t admin_connections_max = 64;

  AgentConfig();
};

// Sets defaults for a preset (resets [node] to NodeConfig::lan(), wan() or local()).
Status apply_preset(AgentConfig& c, std::string_view preset);
// Reads a TOML file and applies every key in it but `preset` (see toml_preset). Unknown keys are
// errors: a typo must not be silently ignored.
Status apply_toml_file(AgentConfig& c, const std::string& path);
// The same for TOML text already read; `path` names it in messages.
Status apply_toml_text(AgentConfig& c, std::string_view text, const std::string& path);
// "section.key=value" (or "key=value" for top-level keys).
Status apply_override(AgentConfig& c, std::string_view assignment);
// Reads the preset named in a TOML file, if any (so a flag can override it before the rest).
Result<std::optional<std::string>> toml_preset(const std::string& path);

// Checks the whole configuration; messages name the key.
Status validate(const AgentConfig& c);

// Tags travel as the node's metadata in logfmt, sorted by key: `role=web zone="us east"`.
using Tags = std::map<std::string, std::string>;
// "k=v" -> (k, v): a key of letters, digits and `_ . - /`, a value of any bytes but newlines.
Result<std::pair<std::string, std::string>> parse_tag(std::string_view text);
// Every "k=v" of a list (a later key wins); the first malformed one is the error ("tag X: ...").
Result<Tags> parse_tags(const std::vector<std::string>& items);
std::string encode_tags(const Tags& tags);
// "a,b,c": a list of seeds or addresses as flags and logs write it.
std::string comma_list(const std::vector<std::string>& items);
// The tags in a member's metadata; nullopt when the metadata is not tags (free-form).
std::optional<Tags> decode_tags(std::string_view metadata);

// "host:port", "1.2.3.4:port", "[::1]:port" -> (host, port); the host is not resolved here.
Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text);

// One line per key: "section.key = default  # doc", for --config-keys and the docs.
std::string describe_keys(const AgentConfig& defaults);

}  // namespace rumor::tools
