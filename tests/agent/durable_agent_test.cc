// Durability with real agents (include/rumor/durable.h, docs/store.md "Durability"): three
// agents with `--data-dir DIR --sync always` are killed with SIGKILL in the middle of a stream of
// writes, restarted from their directories, and every write a client saw acknowledged is found
// on every agent.
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "tests/agent/process_harness.h"

namespace rumor::testing {
namespace {

std::set<std::string> keys_on(const AgentProcess& a, const std::string& prefix) {
  std::set<std::string> out;
  RunResult r = a.rumor({"keys", prefix, "--json"});
  if (r.status != 0) return out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (e.contains("key") && e["key"].is_string()) out.insert(e["key"].get<std::string>());
  }
  return out;
}

TEST(DurableAgent, KillNineOfEveryAgentLosesNoAcknowledgedWrite) {
  TempDir dir;
  std::vector<std::unique_ptr<AgentProcess>> agents;
  const std::vector<std::string> names = {"d0", "d1", "d2"};
  auto start = [&](std::size_t i, const std::vector<std::string>& join) {
    return agents[i]->start(join, {"--data-dir", dir.path() + "/" + names[i], "--sync", "always"});
  };
  for (const std::string& n : names) agents.push_back(std::make_unique<AgentProcess>(dir.path(), n));
  ASSERT_TRUE(start(0, {})) << agents[0]->error;
  ASSERT_TRUE(start(1, {agents[0]->gossip})) << agents[1]->error;
  ASSERT_TRUE(start(2, {agents[0]->gossip})) << agents[2]->error;

  // One writer per agent, each a stream of `rumor set` commands; a key counts once its command
  // said ok. The agents are killed while the streams run.
  std::vector<std::vector<std::string>> acked(names.size());
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (std::size_t w = 0; w < names.size(); ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 2000 && !stop.load(); ++i) {
        const std::string key = "stream/" + names[w] + "/" + std::to_string(i);
        RunResult r = agents[w]->rumor({"set", key, "value-" + std::to_string(i)}, 5);
        if (r.status != 0) break;  // the agent is gone: this write was not acknowledged
        acked[w].push_back(key);
      }
    });
  }
  ASSERT_TRUE(eventually([&] {
    return acked[0].size() >= 40 && acked[1].size() >= 40 && acked[2].size() >= 40;
  }, 60));
  for (auto& a : agents) a->kill9();
  stop.store(true);
  for (auto& t : writers) t.join();

  ASSERT_TRUE(start(0, {})) << agents[0]->error;
  ASSERT_TRUE(start(1, {agents[0]->gossip})) << agents[1]->error;
  ASSERT_TRUE(start(2, {agents[0]->gossip})) << agents[2]->error;
  for (std::size_t w = 0; w < names.size(); ++w) {
    EXPECT_NE(agents[w]->log().find("existed=true"), std::string::npos) << agents[w]->log();
  }
  std::size_t total = 0;
  for (const auto& a : acked) total += a.size();
  // Every acknowledged write, on every agent: its own from its directory, the others' by
  // anti-entropy after the restart.
  for (std::size_t on = 0; on < names.size(); ++on) {
    std::set<std::string> missing;
    const bool all = eventually([&] {
      const std::set<std::string> have = keys_on(*agents[on], "stream/");
      missing.clear();
      for (const auto& a : acked) {
        for (const std::string& k : a) {
          if (!have.count(k)) missing.insert(k);
        }
      }
      return missing.empty();
    }, 60);
    EXPECT_TRUE(all) << missing.size() << " of " << total << " acknowledged writes missing on "
                     << names[on] << ", e.g. " << (missing.empty() ? "" : *missing.begin());
  }
}

TEST(DurableAgent, ADamagedDataDirectoryStopsTheAgentWithAClearError) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  std::filesystem::create_directories(data);
  std::ofstream(data + "/CURRENT") << "MANIFEST-000009\n";
  std::ofstream(data + "/MANIFEST-000009") << "this is not a manifest";
  AgentProcess a(dir.path(), "broken");
  ASSERT_FALSE(a.start({}, {"--data-dir", data}, 20));
  EXPECT_NE(a.error.find("--data-dir " + data), std::string::npos) << a.error;
}

TEST(DurableAgent, AGracefulRestartKeepsStateAndTheKeyring) {
  TempDir dir;
  AgentProcess a(dir.path(), "k0");
  const std::string data = dir.path() + "/data";
  ASSERT_TRUE(a.start({}, {"--data-dir", data, "--sync", "batch"})) << a.error;
  RunResult gen = run_rumor({"keys", "generate"});
  ASSERT_EQ(gen.status, 0) << gen.err;
  std::string key = gen.out;
  while (!key.empty() && (key.back() == '\n' || key.back() == ' ')) key.pop_back();
  ASSERT_EQ(a.rumor({"keys", "install", key}).status, 0);
  ASSERT_EQ(a.rumor({"keys", "use", key}).status, 0);
  ASSERT_EQ(a.rumor({"set", "config/flag", "on"}).status, 0);
  ASSERT_EQ(a.terminate(), 0) << a.log();
  ASSERT_TRUE(a.start({}, {"--data-dir", data, "--sync", "batch"})) << a.error;
  RunResult g = a.rumor({"get", "config/flag"});
  EXPECT_EQ(g.out, "on\n") << g.err;
  RunResult k = a.rumor({"keys", "list"});
  EXPECT_NE(k.out.find("primary"), std::string::npos) << k.out;
  EXPECT_NE(a.log().find("keyring restored"), std::string::npos) << a.log();
}

}  // namespace
}  // namespace rumor::testing
