// Embedding rumor: a Node driven by a Reactor on real UDP, inside your own program.
//
//   embed --selftest
//       Two nodes in this process on 127.0.0.1: B joins A, A sets service_version=v1.2.4, B
//       sees it through its subscription. Exits 0 once B has it (bounded), 1 otherwise.
//   embed --bind 127.0.0.1:7001 [--join 127.0.0.1:7002] [--set KEY=VALUE]
//       One node that prints every change it hears of, until Ctrl-C.
//
// Built against the installed package: find_package(rumor) and target rumor::rumor, or
// `pkg-config --cflags --libs rumor`.
#include <rumor/node.h>
#include <rumor/reactor.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

namespace {

// The node's clock: wall-clock milliseconds. (rumor never reads a clock itself.)
class WallClock final : public rumor::TimeSource {
 public:
  std::uint64_t now_ms() override {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  }
};

// One embedded member: a reactor (the UDP socket and its thread) and the node it drives.
struct Member {
  std::unique_ptr<rumor::Reactor> reactor;
  std::unique_ptr<rumor::Node> node;
};

std::unique_ptr<Member> start_member(const std::string& name, const std::string& bind,
                                     const std::string& join, rumor::TimeSource& clock,
                                     std::function<void(const rumor::Change&)> on_change) {
  auto m = std::make_unique<Member>();
  rumor::ReactorConfig rc;
  auto bind_addr = rumor::Address::parse(bind);
  if (!bind_addr) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), bind_addr.status().to_string().c_str());
    return nullptr;
  }
  rc.transport.bind = *bind_addr;
  rc.transport.reuse_port = false;
  rc.pin = false;  // an example shares the machine
  auto reactor = rumor::Reactor::open(rc);
  if (!reactor) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), reactor.status().to_string().c_str());
    return nullptr;
  }
  m->reactor = std::move(reactor.value());

  rumor::NodeConfig nc = rumor::NodeConfig::local();
  nc.name = name;
  nc.advertise = m->reactor->local_address();  // the port the kernel chose
  if (!join.empty()) {
    auto seed = rumor::Address::parse(join);
    if (!seed) {
      std::fprintf(stderr, "%s: --join: %s\n", name.c_str(), seed.status().to_string().c_str());
      return nullptr;
    }
    nc.seeds.push_back(*seed);
  }
  auto node = rumor::Node::create(nc, clock);
  if (!node) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), node.status().to_string().c_str());
    return nullptr;
  }
  m->node = std::move(node.value());
  m->node->subscribe("", std::move(on_change));  // callbacks run on the reactor thread
  if (rumor::Status s = m->reactor->start(*m->node, clock); !s) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), s.to_string().c_str());
    return nullptr;
  }
  std::printf("%s listening on %s (%s: %s)\n", name.c_str(),
              m->reactor->local_address().to_string().c_str(), m->reactor->backend().c_str(),
              m->reactor->backend_reason().c_str());
  return m;
}

int selftest() {
  WallClock clock;
  std::atomic<bool> b_has_it{false};
  auto a = start_member("a", "127.0.0.1:0", "", clock, [](const rumor::Change&) {});
  if (!a) return 1;
  auto b = start_member("b", "127.0.0.1:0", a->reactor->local_address().to_string(), clock,
                        [&](const rumor::Change& c) {
                          if (c.key == "service_version" && c.value == "v1.2.4") {
                            std::printf("b heard: %s = %s\n", c.key.c_str(), c.value.c_str());
                            b_has_it.store(true);
                          }
                        });
  if (!b) return 1;
  // Any thread may write; wake() makes the reactor apply it now rather than at its next timer.
  if (rumor::Status s = a->node->set("service_version", "v1.2.4"); !s) {
    std::fprintf(stderr, "set: %s\n", s.to_string().c_str());
    return 1;
  }
  a->reactor->wake();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!b_has_it.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto value = b->node->get("service_version");  // a lock-free read, from this thread
  std::printf("b reads service_version = %s\n", value ? value->c_str() : "(none)");
  // Graceful: each node announces its leave on its reactor thread, then the thread ends.
  b->reactor->stop();
  a->reactor->stop();
  return b_has_it.load() && value == "v1.2.4" ? 0 : 1;
}

std::atomic<bool> g_stop{false};

}  // namespace

int main(int argc, char** argv) {
  std::string bind = "127.0.0.1:7001", join, set;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--selftest") return selftest();
    if (arg == "--bind" && i + 1 < argc) {
      bind = argv[++i];
    } else if (arg == "--join" && i + 1 < argc) {
      join = argv[++i];
    } else if (arg == "--set" && i + 1 < argc) {
      set = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: embed --selftest | embed [--bind HOST:PORT] [--join HOST:PORT] "
                   "[--set KEY=VALUE]\n");
      return 2;
    }
  }
  WallClock clock;
  auto me = start_member(bind, bind, join, clock, [](const rumor::Change& c) {
    std::printf("%s %s%s%s\n", c.local ? "local " : "remote", c.key.c_str(),
                c.deleted ? " deleted" : " = ", c.deleted ? "" : c.value.c_str());
    std::fflush(stdout);
  });
  if (!me) return 1;
  if (const auto eq = set.find('='); eq != std::string::npos) {
    (void)me->node->set(set.substr(0, eq), set.substr(eq + 1));
    me->reactor->wake();
  }
  signal(SIGINT, [](int) { g_stop.store(true); });
  signal(SIGTERM, [](int) { g_stop.store(true); });
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  me->reactor->stop();
  return 0;
}
