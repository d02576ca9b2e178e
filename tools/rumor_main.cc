// `rumor`: the agent and the client commands (docs/agent.md).
//
//   rumor agent --bind 127.0.0.1:7001 --admin 127.0.0.1:7101 --join 127.0.0.1:7002
//   rumor set service_version v1.2.4 --admin 127.0.0.1:7101
//   rumor get service_version --admin 127.0.0.1:7102
//
// Exit status: 0 success; 1 an operating error (port in use, no agent at the admin address,
// unreachable seeds, key not found, value too large); 2 a usage error (bad flag or config).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "tools/agent.h"
#include "tools/agent_config.h"
#include "tools/client.h"
#include "tools/load.h"
#include "tools/sim_explore.h"

using namespace rumor;
using namespace rumor::tools;

namespace {

struct AgentFlags {
  std::string config_file, preset, bind, advertise, admin, metrics, name, label, metadata,
      log_level, log_format, backend, xdp_interface, ready_file, data_dir, sync;
  std::vector<std::string> join, retry_join, options, tags;
  std::uint64_t retry_interval_ms = 0;
  std::uint32_t retry_max = 0;
  std::uint32_t sync_interval_ms = 0;
  std::uint32_t cores = 1;
  int cpu = -1;
  std::uint64_t join_timeout_ms = 0;
  bool no_pin = false, config_keys = false;
};

int fail_usage(const std::string& msg) {
  std::fprintf(stderr, "rumor agent: %s\n", msg.c_str());
  return 2;
}

// The configuration from the preset, the file, -o and the flags (again on every reload).
Result<AgentConfig> build_config(const AgentFlags& f, CLI::App& cmd) {
  AgentConfig c;
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  auto usage = [](const std::string& m) { return Status::error(Code::kInvalidArgument, m); };
  // Precedence: preset (flag, else the file's, else lan), then the file, then -o, then flags.
  std::string preset = "lan";
  if (!f.config_file.empty()) {
    auto p = toml_preset(f.config_file);
    if (!p) return usage(p.status().message());
    if (*p) preset = **p;
  }
  if (given("--preset")) preset = f.preset;
  if (Status s = apply_preset(c, preset); !s) return usage(s.message());
  if (!f.config_file.empty()) {
    if (Status s = apply_toml_file(c, f.config_file); !s) return usage(s.message());
  }
  for (const std::string& o : f.options) {
    if (Status s = apply_override(c, o); !s) return usage(s.message());
  }
  auto set = [&](const char* flag, std::string_view key, const std::string& value) -> Status {
    if (!given(flag)) return Status::ok();
    Status s = apply_override(c, fmt::format("{}={}", key, value));
    if (!s) return Status::error(s.code(), fmt::format("{} {}: {}", flag, value, s.message()));
    return s;
  };
  for (Status s : {set("--bind", "bind", f.bind), set("--advertise", "advertise", f.advertise),
                   set("--admin", "admin", f.admin), set("--metrics", "metrics", f.metrics),
                   set("--name", "name", f.name), set("--label", "label", f.label),
                   set("--metadata", "metadata", f.metadata),
                   set("--log-level", "log_level", f.log_level),
                   set("--log-format", "log_format", f.log_format),
                   set("--backend", "transport.backend", f.backend),
                   set("--xdp-interface", "transport.xdp_interface", f.xdp_interface),
                   set("--ready-file", "ready_file", f.ready_file),
                   set("--data-dir", "data_dir", f.data_dir), set("--sync", "sync", f.sync),
                   set("--sync-interval-ms", "sync_interval_ms",
                       std::to_string(f.sync_interval_ms)),
                   set("--join", "join", comma_list(f.join)),
                   set("--retry-join", "retry_join", comma_list(f.retry_join)),
                   set("--retry-interval-ms", "retry_interval_ms",
                       std::to_string(f.retry_interval_ms)),
                   set("--retry-max", "retry_max", std::to_string(f.retry_max)),
                   set("--cores", "cores", std::to_string(f.cores)),
                   set("--cpu", "reactor.cpu", std::to_string(f.cpu)),
                   set("--join-timeout-ms", "join_timeout_ms",
                       std::to_string(f.join_timeout_ms))}) {
    if (!s) return usage(s.message());
  }
  if (f.no_pin) c.reactor.pin = false;
  if (given("--tag")) c.tags = f.tags;  // not through a comma list: a value may hold commas
  if (Status s = validate(c); !s) return usage(s.message());
  return c;
}

int run_agent(const AgentFlags& f, CLI::App& cmd) {
  if (f.config_keys) {
    std::fputs(describe_keys(AgentConfig()).c_str(), stdout);
    return 0;
  }
  auto c = build_config(f, cmd);
  if (!c) return fail_usage(c.status().message());
  Agent agent(std::move(c.value()));
  agent.set_config_source([&f, &cmd] { return build_config(f, cmd); });
  return agent.run();
}

void add_client_options(CLI::App* cmd, ClientOptions& o) {
  cmd->add_option("--admin", o.admin, "the agent's admin address HOST:PORT ($RUMOR_ADMIN)")
      ->capture_default_str();
  cmd->add_flag("--json", o.json, "print JSON for scripts");
  cmd->add_option("--timeout", o.timeout_s, "seconds to wait for the agent")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rumor: an embeddable gossip engine. Run an agent, or talk to a running one."};
  app.name("rumor");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("rumor ") + RUMOR_VERSION_STRING);
  app.footer(
      "Run `rumor COMMAND --help` for a command's flags. docs/agent.md has the whole story.");

  ClientOptions client;
  if (const char* env = std::getenv("RUMOR_ADMIN"); env != nullptr && *env != '\0') {
    client.admin = env;
  }

  // ---- agent ----
  AgentFlags af;
  CLI::App* agent = app.add_subcommand("agent", "run a node: gossip over UDP, serve admin");
  agent->add_option("--bind", af.bind, "gossip address HOST:PORT (UDP) [127.0.0.1:7946]");
  agent->add_option("--advertise", af.advertise,
                    "address peers send to (default: --bind; needed for a wildcard bind)");
  agent->add_option("--join", af.join,
                    "seed(s) HOST:PORT[,HOST:PORT...] (names resolve to every address); any one "
                    "is enough; start fails after --join-timeout-ms")
      ->delimiter(',');
  agent->add_option("--retry-join", af.retry_join,
                    "seed(s) joined in the background: serve at once, retry with backoff until "
                    "one answers")
      ->delimiter(',');
  agent->add_option("--retry-interval-ms", af.retry_interval_ms,
                    "first wait between join attempts, doubling to 30 s [1000]");
  agent->add_option("--retry-max", af.retry_max,
                    "background join attempts before exiting with an error (0: forever) [0]");
  agent->add_option("--admin", af.admin, "admin address HOST:PORT (TCP, loopback) [127.0.0.1:7373]");
  agent->add_option("--metrics", af.metrics, "serve Prometheus metrics on HOST:PORT (HTTP)");
  agent->add_option("--name", af.name, "this node's name (default: its gossip address)");
  agent->add_option("--cores", af.cores, "reactor threads: the node's shards spread over N cores (see docs/agent.md)")
      ->check(CLI::Range(1, 1024));
  agent->add_option("--label", af.label, "cluster label; nodes with other labels are ignored");
  agent->add_option("--metadata", af.metadata, "node metadata, gossiped with membership");
  agent->add_option("--tag", af.tags,
                    "KEY=VALUE tag, gossiped (repeatable); change with `rumor tags set|del`");
  agent->add_option("--config", af.config_file, "TOML configuration file; flags override it")
      ->check(CLI::ExistingFile);
  agent->add_option("--preset", af.preset, "lan | wan | local timer defaults [lan]");
  agent->add_option("--log-level", af.log_level, "debug | info | warn | error [info]");
  agent->add_option("--log-format", af.log_format,
                    "text (strict logfmt) | json: one event per line on stderr [text]");
  agent->add_option("--backend", af.backend, "auto | uring | mmsg | xdp [auto]");
  agent->add_option("--xdp-interface", af.xdp_interface,
                    "interface for --backend xdp (AF_XDP; falls back to io_uring)");
  agent->add_option("--cpu", af.cpu, "pin the reactor to this CPU (-1: first allowed)");
  agent->add_flag("--no-pin", af.no_pin, "do not pin the reactor thread (shared machines)");
  agent->add_option("--join-timeout-ms", af.join_timeout_ms,
                    "exit with an error if no seed answers in time (0: wait) [10000]");
  agent->add_option("--ready-file", af.ready_file,
                    "write a JSON line with the bound addresses here once serving");
  agent->add_option("--data-dir", af.data_dir,
                    "keep the node's state in DIR (RocksDB) and load it at start (default: memory)");
  agent->add_option("--sync", af.sync,
                    "with --data-dir: always (ack writes once on disk) | batch | off [batch]");
  agent->add_option("--sync-interval-ms", af.sync_interval_ms,
                    "with --data-dir: batch/off commit interval, the batch loss window [100]");
  agent->add_option("-o,--option", af.options,
                    "set any config key: section.key=value (see --config-keys)");
  agent->add_flag("--config-keys", af.config_keys, "list every config key with its default");

  // ---- client commands ----
  std::string key, value, prefix, filter;
  bool verbose = false;
  std::size_t limit = 10'000;
  std::uint64_t count = 0;
  CLI::App* get = app.add_subcommand("get", "print a key's value");
  get->add_option("KEY", key, "the key")->required();
  get->add_flag("-v,--verbose", verbose, "also print the version and its writer");
  bool raw = false;
  get->add_flag("--raw", raw, "print the value's bytes exactly, without a newline (binary values)");
  add_client_options(get, client);
  CLI::App* setc = app.add_subcommand("set", "write a key; it spreads to every node");
  setc->add_option("KEY", key, "the key")->required();
  setc->add_option("VALUE", value,
                   "the value; - reads it from standard input, @FILE from a file")
      ->required();
  add_client_options(setc, client);
  CLI::App* del = app.add_subcommand("del", "delete a key (a tombstone that spreads)");
  del->add_option("KEY", key, "the key")->required();
  add_client_options(del, client);
  // `rumor keys [PREFIX]` lists the store's keys; `rumor keys install|use|remove|list|mode|
  // generate` manages the encryption keyring. The keyring words are recognised first; a store
  // prefix that is one of them is given with --prefix (docs/agent.md).
  CLI::App* keys = app.add_subcommand(
      "keys", "list live keys and values under a prefix, or manage the encryption keyring");
  keys->add_option("PREFIX", prefix, "key prefix (default: all keys)");
  keys->add_option("--prefix", prefix, "key prefix, for a prefix that is a keyring word");
  keys->add_option("--limit", limit, "at most this many keys")->capture_default_str();
  add_client_options(keys, client);
  std::string key_arg;
  struct KeyringCmd {
    const char* name;
    const char* help;
    const char* arg;
    const char* arg_help;
    CLI::App* cmd = nullptr;
  };
  std::vector<KeyringCmd> keyring = {
      {"install", "add a key to the agent's keyring (accepted; primary if it is the first)",
       "KEY", "base64 32-byte key; - reads it from stdin"},
      {"use", "make an installed key the primary (it seals what the agent sends)", "KEY",
       "fingerprint (from `rumor keys list`) or the base64 key"},
      {"remove", "remove a key from the agent's keyring", "KEY",
       "fingerprint (from `rumor keys list`) or the base64 key"},
      {"list", "list the agent's encryption mode and keys (fingerprints only)", nullptr, nullptr},
      {"mode", "set the agent's encryption mode: off, accept, send, require", "MODE",
       "off | accept | send | require"},
      {"generate", "print a new random key (base64), without any agent", nullptr, nullptr},
  };
  for (KeyringCmd& k : keyring) {
    k.cmd = keys->add_subcommand(k.name, k.help);
    if (k.arg) k.cmd->add_option(k.arg, key_arg, k.arg_help)->required();
    if (std::string_view(k.name) != "generate") add_client_options(k.cmd, client);
  }
  CLI::App* members = app.add_subcommand("members", "list the members this agent knows");
  MembersFilter mf;
  members->add_option("--tag", mf.tags, "only members with this tag KEY=VALUE (repeatable: all)");
  members->add_option("--status", mf.status, "only members in this state: alive | suspect | dead | left")
      ->check(CLI::IsMember({"alive", "suspect", "dead", "left"}));
  members->add_flag("--detailed", mf.detailed, "also show id, incarnation and raw metadata");
  add_client_options(members, client);
  std::vector<std::string> args;
  CLI::App* tags = app.add_subcommand("tags", "show or change this agent's tags (gossiped)");
  tags->require_subcommand(0, 1);
  add_client_options(tags, client);
  CLI::App* tags_set = tags->add_subcommand("set", "set tags: KEY=VALUE...");
  tags_set->add_option("TAG", args, "KEY=VALUE")->required();
  add_client_options(tags_set, client);
  CLI::App* tags_del = tags->add_subcommand("del", "remove tags: KEY...");
  tags_del->add_option("KEY", args, "tag key")->required();
  add_client_options(tags_del, client);
  CLI::App* joinc = app.add_subcommand("join", "make the agent join (or merge with) a cluster");
  joinc->add_option("ADDRESS", args, "HOST:PORT of any member; names resolve to every address")
      ->required();
  add_client_options(joinc, client);
  CLI::App* leave = app.add_subcommand("leave", "the agent leaves the cluster gracefully and exits");
  add_client_options(leave, client);
  CLI::App* reload = app.add_subcommand(
      "reload", "the agent reads its configuration again (as on SIGHUP) and applies what it can");
  add_client_options(reload, client);
  CLI::App* stats = app.add_subcommand("stats", "print the agent's counters");
  stats->add_option("FILTER", filter, "only names containing this");
  add_client_options(stats, client);
  CLI::App* info = app.add_subcommand("info", "print the agent's identity and addresses");
  add_client_options(info, client);
  CLI::App* watch = app.add_subcommand("watch", "stream changes to keys under a prefix");
  watch->add_option("PREFIX", prefix, "key prefix (default: all keys)");
  watch->add_option("--count", count, "exit after this many changes (0: never)");
  add_client_options(watch, client);

  // ---- load ----
  LoadOptions lo;
  CLI::App* load = app.add_subcommand(
      "load", "load-test a cluster: N nodes in the simulator or on loopback UDP (docs/load.md)");
  load->add_option("--nodes", lo.nodes, "cluster size")->required();
  load->add_option("--mode", lo.mode, "sim (one process, virtual time) | udp (loopback)")
      ->capture_default_str();
  load->add_option("--workload", lo.workload, "update | writes | churn | crash | partition")
      ->capture_default_str();
  load->add_option("--seed", lo.seed, "randomness (sim runs replay exactly from it)")
      ->capture_default_str();
  load->add_option("--seeds", lo.seeds, "join seeds (nodes 0..K-1)")->capture_default_str();
  load->add_option("--bootstrap", lo.bootstrap,
                   "join (through the seeds) | static (sim: nodes start knowing every member)")
      ->capture_default_str();
  load->add_option("--preset", lo.preset, "node timers: local | lan | wan")->capture_default_str();
  load->add_option("--membership", lo.membership,
                   "full (every node knows every node) | partial (HyParView views + Plumtree)")
      ->capture_default_str();
  load->add_option("--loss", lo.loss, "datagram loss probability")->capture_default_str();
  load->add_option("--latency-ms", lo.latency_ms, "one-way latency (sim)")->capture_default_str();
  load->add_option("--jitter-ms", lo.jitter_ms, "added uniform jitter (sim)")->capture_default_str();
  load->add_option("--duplicate", lo.duplicate, "duplication probability (sim)")
      ->capture_default_str();
  load->add_option("--reorder", lo.reorder, "reordering probability (sim)")->capture_default_str();
  load->add_option("--keys", lo.keys, "writes: keys written in turn")->capture_default_str();
  load->add_option("--write-rate", lo.write_rate, "writes: writes per second, cluster-wide")
      ->capture_default_str();
  load->add_option("--churn-rate", lo.churn_rate, "churn: node crashes (and restarts) per second")
      ->capture_default_str();
  load->add_option("--duration-s", lo.duration_s, "writes/churn/partition phase length")
      ->capture_default_str();
  load->add_option("--max-time-s", lo.max_time_s, "bound on each wait (cluster seconds)")
      ->capture_default_str();
  load->add_option("--settle-s", lo.settle_s,
                   "seconds to let join traffic drain before the workload; the idle cost is "
                   "measured over them (default: five gossip rounds)")
      ->check(CLI::Range(0.0, 3600.0));
  load->add_option("--procs", lo.procs, "udp: worker processes")->capture_default_str();
  load->add_option("--workers-listen", lo.workers_listen,
                   "udp: do not fork; wait on this TCP HOST:PORT for --procs `rumor load-worker` "
                   "processes (other hosts, namespaces, pods)");
  load->add_option("--worker-wait-s", lo.worker_wait_s,
                   "udp: how long to wait for the workers to connect")
      ->capture_default_str();
  ExploreOptions eo;
  std::string explore_seeds = "1..100";
  CLI::App* sim = app.add_subcommand("sim", "simulator tools");
  sim->require_subcommand(1);
  CLI::App* explore = sim->add_subcommand(
      "explore", "a fault explorer: random clusters, workloads and fault schedules, one per seed, "
                 "checked against the invariants (docs/protocol.md)");
  explore->add_option("--seeds", explore_seeds, "A..B (inclusive) or one seed")
      ->capture_default_str();
  explore->add_option("--max-nodes", eo.max_nodes, "largest cluster a seed may draw (at least 3)")
      ->capture_default_str();
  explore->add_option("--max-wall-s", eo.max_wall_s,
                      "start no new seed after this many seconds (0: no bound)")
      ->capture_default_str();
  explore->add_flag("--verbose", eo.verbose, "print every seed's schedule, not only failures'");
  std::string skip_faults;
  explore->add_option("--skip-faults", skip_faults,
                      "K,K,...: faults (numbered from 0 as drawn) to draw but not apply, as a "
                      "minimised replay prints them");
  bool no_minimize = false;
  explore->add_flag("--no-minimize", no_minimize, "on a failure, do not search for the faults it needs");
  explore->add_option("-o,--option", eo.overrides,
                      "node.KEY=VALUE or store.KEY=VALUE for every explored node (see rumor agent "
                      "--config-keys)");
  LoadWorkerOptions lw;
  CLI::App* load_worker = app.add_subcommand(
      "load-worker", "run a share of a `rumor load --workers-listen` test's nodes (docs/load.md)");
  load_worker->add_option("--coordinator", lw.coordinator, "the coordinator's HOST:PORT")
      ->required();
  load_worker->add_option("--host", lw.host,
                          "IP the nodes bind and advertise (default: this end of the connection "
                          "to the coordinator)");
  load_worker->add_option("--connect-timeout-s", lw.connect_timeout_s,
                          "how long to retry connecting to the coordinator")
      ->capture_default_str();
  load->add_option("--backend", lo.backend, "udp: auto | uring | mmsg")->capture_default_str();
  load->add_option("--out", lo.out_dir, "write convergence.csv and convergence.png here");
  load->add_option("--progress", lo.progress, "auto | tty | plain | none")->capture_default_str();
  load->add_option("--progress-s", lo.progress_s, "seconds between plain progress lines")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  if (agent->parsed()) return run_agent(af, *agent);
  if (load->parsed()) return run_load(lo);
  if (load_worker->parsed()) return run_load_worker(lw);
  if (explore->parsed()) {
    eo.minimize = !no_minimize;
    for (std::size_t at = 0; !skip_faults.empty() && at != std::string::npos;) {
      const std::size_t comma = skip_faults.find(',', at);
      const std::string item = skip_faults.substr(at, comma == std::string::npos ? comma : comma - at);
      char* end = nullptr;
      const unsigned long long k = std::strtoull(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0') {
        std::fprintf(stderr, "rumor sim explore: --skip-faults %s: expected K,K,... (numbers)\n",
                     skip_faults.c_str());
        return 2;
      }
      eo.skip_faults.insert(static_cast<std::size_t>(k));
      at = comma == std::string::npos ? comma : comma + 1;
    }
    if (!parse_seed_range(explore_seeds, &eo.first_seed, &eo.last_seed)) {
      std::fprintf(stderr, "rumor sim explore: --seeds %s: expected A..B with A <= B, or one seed\n",
                   explore_seeds.c_str());
      return 2;
    }
    return run_explore(eo);
  }
  if (get->parsed()) return cmd_get(client, key, verbose, raw);
  if (setc->parsed()) return cmd_set(client, key, value);
  if (del->parsed()) return cmd_del(client, key);
  for (const KeyringCmd& k : keyring) {
    if (!k.cmd->parsed()) continue;
    const std::string_view name = k.name;
    if (name == "generate") {
      std::printf("%s\n", encode_key(generate_key()).c_str());
      return 0;
    }
    if (name == "install" && key_arg == "-") {
      if (!std::getline(std::cin, key_arg)) {
        std::fprintf(stderr, "rumor keys install: no key on stdin\n");
        return 2;
      }
    }
    return cmd_keyring(client, k.name, key_arg);
  }
  if (keys->parsed()) return cmd_keys(client, prefix, limit);
  if (members->parsed()) return cmd_members(client, mf);
  if (tags_set->parsed()) return cmd_tags(client, "set", args);
  if (tags_del->parsed()) return cmd_tags(client, "del", args);
  if (tags->parsed()) return cmd_tags(client, "list", {});
  if (joinc->parsed()) return cmd_join(client, args);
  if (leave->parsed()) return cmd_leave(client);
  if (reload->parsed()) return cmd_reload(client);
  if (stats->parsed()) return cmd_stats(client, filter);
  if (info->parsed()) return cmd_info(client);
  if (watch->parsed()) return cmd_watch(client, prefix, count);
  return 2;
}
