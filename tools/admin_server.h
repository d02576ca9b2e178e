// The agent's admin thread: one poll(2) loop over the admin listener (tools/admin_protocol.h),
// the metrics listener (HTTP GET /metrics), their connections, the agent's eventfd (answers and
// watched changes from the reactor) and a stop eventfd. Bounded everywhere: connections, bytes
// buffered per connection, rows per answer, time waiting for the reactor.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "rumor/status.h"
#include "rumor/transport.h"
#include "tools/agent.h"

namespace rumor::tools {

// Opens a listening TCP socket; messages say what to do about a taken or foreign address.
Result<int> listen_tcp(const Address& at, std::string_view what);
bool is_loopback(const Address& a);

class AdminServer {
 public:
  // Binds the admin (and metrics) listeners; does not start serving.
  static Result<std::unique_ptr<AdminServer>> open(Agent& agent);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  Address admin_address() const { return admin_addr_; }
  std::optional<Address> metrics_address() const { return metrics_addr_; }

  void start();
  void stop();

  // How long an admin request waits for the reactor before it is answered with an error.
  static constexpr std::uint64_t kReactorAnswerMs = 5000;
  static constexpr std::size_t kKeysLimitMax = 100'000;
  static constexpr std::size_t kConnOutputBytesMax = 16u << 20;  // a slow watcher is dropped
  static constexpr std::size_t kHttpRequestBytesMax = 8192;

 private:
  struct Conn {
    std::uint64_t id = 0;
    int fd = -1;
    bool http = false;
    std::string in;
    std::string out;
    std::size_t out_off = 0;
    bool pending = false;
    std::uint64_t pending_seq = 0;
    std::uint64_t pending_deadline_ns = 0;
    bool watching = false;
    std::string watch_prefix;
    bool read_closed = false;
    bool close_after_write = false;
    bool waiting_durable = false;  // a write applied, its answer waiting for the disk
  };

  explicit AdminServer(Agent& agent);
  void loop();
  void accept_all(int listen_fd, bool http);
  void on_readable(Conn& c);
  void on_writable(Conn& c);
  void process_admin(Conn& c);
  void process_http(Conn& c);
  void handle(Conn& c, const Message& req);
  void post_to_reactor(Conn& c, Op op, bool metrics, std::string key, std::string value);
  void on_completion(std::unique_ptr<Completion> done);
  // Answers the writes whose commit has reached the disk (sync = always).
  void check_durable();
  void on_changes();
  void respond(Conn& c, const Message& m);
  void respond_http(Conn& c, int status, std::string_view reason, std::string_view type,
                    const std::string& body);
  void close_conn(Conn& c);
  void update_watching();
  std::string writer_name(NodeId id) const;
  void refresh_names(const Snapshot& s);

  Agent& agent_;
  std::vector<std::unique_ptr<Completion>> durable_waits_;
  // Requests longer than a set of the longest key and value are refused unread.
  const std::uint32_t request_bytes_max_;
  int admin_fd_ = -1;
  int metrics_fd_ = -1;
  int stop_fd_ = -1;
  Address admin_addr_;
  std::optional<Address> metrics_addr_;
  std::thread thread_;
  std::unordered_map<std::uint64_t, Conn> conns_;
  std::uint64_t next_conn_ = 1;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_refresh_ns_ = 0;
  std::unordered_map<NodeId, std::string> names_;
  std::uint64_t watchers_ = 0;
};

}  // namespace rumor::tools
