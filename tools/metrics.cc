#include "tools/metrics.h"

#include <fmt/format.h>

#include <array>

namespace rumor::tools {

namespace {

std::string format_value(double v) {
  if (v == static_cast<double>(static_cast<std::uint64_t>(v)) && v < 1e18) {
    return std::to_string(static_cast<std::uint64_t>(v));
  }
  return fmt::format("{:.6g}", v);
}

}  // namespace

std::vector<Metric> collect_metrics(const Snapshot& s) {
  std::vector<Metric> m;
  auto counter = [&](std::string name, std::string labels, double v, std::string help) {
    m.push_back({std::move(name), std::move(labels), "counter", std::move(help), v});
  };
  auto gauge = [&](std::string name, std::string labels, double v, std::string help) {
    m.push_back({std::move(name), std::move(labels), "gauge", std::move(help), v});
  };
  const NodeCounters& n = s.node;

  // Packets and bytes, as the protocol counts them.
  counter("rumor_packets_sent_total", "", n.packets_sent, "Protocol packets sent.");
  counter("rumor_packets_received_total", "", n.packets_received, "Protocol packets received.");
  counter("rumor_bytes_sent_total", "", n.bytes_sent, "Protocol bytes sent.");
  counter("rumor_bytes_received_total", "", n.bytes_received, "Protocol bytes received.");
  counter("rumor_packets_unsent_total", "", n.sink_full,
          "Packets not sent because no send buffer was free.");
  // Drops by reason: the protocol's and the transport's.
  const std::array<std::pair<const char*, std::uint64_t>, 13> drops = {{
      {"bad_magic", n.drop_bad_magic},
      {"bad_version", n.drop_bad_version},
      {"wrong_label", n.drop_wrong_label},
      {"truncated", n.drop_truncated},
      {"malformed", n.drop_malformed},
      {"from_self", n.drop_from_self},
      {"unknown_type", n.drop_unknown_type},
      {"rate_limited", n.drop_rate_limited},
      {"sealed_refused", n.drop_sealed_refused},
      {"unknown_key", n.drop_unknown_key},
      {"auth_failed", n.drop_auth_failed},
      {"replayed", n.drop_replayed},
      {"plaintext_refused", n.drop_plaintext_refused},
  }};
  for (const auto& [reason, v] : drops) {
    counter("rumor_packet_drops_total", fmt::format("reason=\"{}\"", reason), v,
            "Received packets dropped by the protocol, by reason.");
  }
  for (std::size_t r = 0; r < kDropReasonCount; ++r) {
    counter("rumor_transport_drops_total",
            fmt::format("reason=\"{}\"", drop_reason_name(static_cast<DropReason>(r))),
            s.transport.drops[r], "Datagrams dropped by the transport, by reason.");
  }
  counter("rumor_packets_sealed_total", "", n.packets_sealed,
          "Packets sent sealed (encrypted and authenticated).");
  counter("rumor_packets_opened_total", "", n.packets_opened,
          "Sealed packets received, authenticated and decrypted.");
  // Merges.
  counter("rumor_merges_total", "outcome=\"applied\"", n.updates_merged,
          "Remote updates merged into the store, by outcome.");
  counter("rumor_merges_total", "outcome=\"stale\"", n.updates_stale,
          "Remote updates merged into the store, by outcome.");
  counter("rumor_merges_total", "outcome=\"refused\"", n.updates_refused,
          "Remote updates merged into the store, by outcome.");
  // Dissemination.
  counter("rumor_broadcasts_total", "event=\"queued\"", n.broadcasts_queued,
          "Piggybacked updates (rumor mongering), by event.");
  counter("rumor_broadcasts_total", "event=\"sent\"", n.broadcasts_sent,
          "Piggybacked updates (rumor mongering), by event.");
  counter("rumor_broadcasts_total", "event=\"dropped\"", n.broadcasts_dropped,
          "Piggybacked updates (rumor mongering), by event.");
  // Reconciliations (anti-entropy).
  counter("rumor_reconciliations_total", "result=\"started\"", n.syncs_started,
          "Push-pull anti-entropy reconciliations.");
  counter("rumor_reconciliations_total", "result=\"completed\"", n.syncs_completed,
          "Push-pull anti-entropy reconciliations.");
  counter("rumor_reconciliation_entries_total", "direction=\"sent\"", n.sync_entries_sent,
          "Entries exchanged by reconciliations.");
  counter("rumor_reconciliation_entries_total", "direction=\"received\"",
          n.sync_entries_received, "Entries exchanged by reconciliations.");
  counter("rumor_reconciliation_bytes_total", "", n.sync_bytes,
          "Bytes sent by reconciliations.");
  counter("rumor_reconciliation_rate_limited_total", "", n.sync_rate_limited,
          "Reconciliation datagrams deferred by the rate limit.");
  counter("rumor_reconciliation_method_total", "method=\"sums\"", n.syncs_by_sums,
          "Reconciliations started here, by the method that settled them.");
  counter("rumor_reconciliation_method_total", "method=\"riblt\"", n.syncs_by_riblt,
          "Reconciliations started here, by the method that settled them.");
  counter("rumor_reconciliation_method_total", "method=\"walk\"", n.syncs_by_walk,
          "Reconciliations started here, by the method that settled them.");
  counter("rumor_reconciliation_riblt_failed_total", "", n.sync_riblt_failed,
          "Rateless IBLT streams that did not decode within bounds (walked instead).");
  counter("rumor_state_sums_differ_total", "", n.state_sums_differ,
          "Pings whose store or member-table fingerprint differed from this node's.");
  counter("rumor_reconciliations_skipped_total", "", n.syncs_skipped,
          "Scheduled exchanges skipped because a probe had found the state equal to a peer's.");
  // Large values (docs/protocol.md "Large values").
  {
    const char* h = "Large-value pulls (values too big for a datagram), by result.";
    counter("rumor_large_value_pulls_total", "result=\"started\"", n.bulk_pulls, h);
    counter("rumor_large_value_pulls_total", "result=\"completed\"", n.bulk_pulled, h);
    counter("rumor_large_value_pulls_total", "result=\"abandoned\"", n.bulk_abandoned, h);
    counter("rumor_large_value_pulls_total", "result=\"refused\"", n.bulk_refused, h);
    counter("rumor_large_value_pulls_total", "result=\"superseded\"", n.bulk_superseded, h);
    counter("rumor_large_value_pulls_total", "result=\"bad_hash\"", n.bulk_bad_hash, h);
    const char* c = "Large-value chunks, by event.";
    counter("rumor_large_value_chunks_total", "event=\"requested\"", n.bulk_requests, c);
    counter("rumor_large_value_chunks_total", "event=\"received\"", n.bulk_chunks_received, c);
    counter("rumor_large_value_chunks_total", "event=\"unexpected\"", n.bulk_chunks_unexpected,
            c);
    counter("rumor_large_value_chunks_total", "event=\"bad\"", n.bulk_chunks_bad, c);
    counter("rumor_large_value_chunks_total", "event=\"served\"", n.bulk_chunks_sent, c);
    counter("rumor_large_value_serve_refused_total", "", n.bulk_serve_refused,
            "Chunk requests not served: value not held, not a member, or over the rate.");
    counter("rumor_large_value_announced_total", "", n.bulk_announced,
            "Large values announced by reconciliation (gossip's ride as broadcasts).");
  }
  // Membership.
  counter("rumor_probes_total", "", n.probes_sent, "SWIM probes sent.");
  counter("rumor_probes_failed_total", "", n.probes_failed, "SWIM probes without an answer.");
  counter("rumor_indirect_probes_total", "", n.indirect_probes, "SWIM indirect probes.");
  counter("rumor_suspicions_total", "", n.suspicions, "Members suspected.");
  counter("rumor_refutations_total", "", n.refutations, "Suspicions of this node refuted.");
  counter("rumor_deaths_declared_total", "", n.deaths_declared, "Members declared dead.");
  counter("rumor_joins_total", "", n.joins, "Members joined.");
  counter("rumor_leaves_total", "", n.leaves, "Members left.");
  gauge("rumor_local_health", "", n.local_health,
        "Lifeguard local health score (0 = healthy).");
  // Partial views (membership = partial; 0 in full mode).
  gauge("rumor_view_size", "view=\"active\"", n.view_active,
        "HyParView view sizes (membership = partial).");
  gauge("rumor_view_size", "view=\"passive\"", n.view_passive,
        "HyParView view sizes (membership = partial).");
  counter("rumor_view_failures_total", "", n.view_failures,
          "Active peers dropped after unanswered probes.");
  counter("rumor_view_shuffles_total", "", n.view_shuffles, "Passive view shuffles sent.");
  counter("rumor_tree_payloads_total", "", n.tree_payloads_sent,
          "Plumtree payloads pushed (eager pushes and graft answers).");
  counter("rumor_tree_duplicates_total", "", n.tree_duplicates,
          "Plumtree payloads received that this node already had.");
  counter("rumor_tree_repairs_total", "kind=\"graft\"", n.tree_grafts,
          "Plumtree tree repairs: GRAFTs and PRUNEs sent.");
  counter("rumor_tree_repairs_total", "kind=\"prune\"", n.tree_prunes,
          "Plumtree tree repairs: GRAFTs and PRUNEs sent.");
  counter("rumor_tree_ihaves_total", "", n.tree_ihaves_sent, "Plumtree IHAVE ids announced.");
  std::array<std::uint64_t, 4> states{};
  for (const Member& mem : s.members) {
    const auto i = static_cast<std::size_t>(mem.state);
    if (i < states.size()) ++states[i];
  }
  for (std::size_t i = 0; i < states.size(); ++i) {
    gauge("rumor_members", fmt::format("state=\"{}\"",
                                       member_state_name(static_cast<MemberState>(i))),
          states[i], "Members known to this node, by state.");
  }
  counter("rumor_events_dropped_total", "", n.events_dropped,
          "Callbacks dropped because the event queue was full.");
  counter("rumor_core_handoffs_total", "result=\"handed\"", n.core_handoffs,
          "Datagrams, entries and changes handed from one owner core to another, by result.");
  counter("rumor_core_handoffs_total", "result=\"dropped\"", n.core_handoff_drops,
          "Datagrams, entries and changes handed from one owner core to another, by result.");
  counter("rumor_changes_total", "", s.changes_seen, "Changes delivered to this agent.");
  counter("rumor_watch_dropped_total", "", s.watch_dropped,
          "Changes not delivered to watch streams (queue full).");
  gauge("rumor_convergence_lag_last_seconds", "", s.lag.last_seconds,
        "Convergence lag of the last remote change merged here.");
  // Transport.
  const TransportCounters& t = s.transport;
  counter("rumor_transport_datagrams_sent_total", "", t.datagrams_sent,
          "Datagrams accepted by the kernel.");
  counter("rumor_transport_datagrams_received_total", "", t.datagrams_received,
          "Datagrams received.");
  counter("rumor_transport_bytes_sent_total", "", t.bytes_sent, "UDP payload bytes sent.");
  counter("rumor_transport_bytes_received_total", "", t.bytes_received,
          "UDP payload bytes received.");
  counter("rumor_transport_submits_total", "", t.submits, "System calls that pushed sends.");
  counter("rumor_transport_gso_sends_total", "", t.gso_sends, "UDP_SEGMENT sends.");
  counter("rumor_transport_gso_segments_total", "", t.gso_segments,
          "Datagrams carried by UDP_SEGMENT sends.");
  counter("rumor_transport_gro_receives_total", "", t.gro_receives,
          "Coalesced receives split back into datagrams.");
  counter("rumor_transport_rx_no_buffer_total", "", t.rx_no_buffer,
          "Receive back-pressure: no free receive buffer.");
  counter("rumor_transport_tx_no_buffer_total", "", t.tx_no_buffer,
          "Send back-pressure: no free send buffer.");
  // Reactor.
  const ReactorCounters& r = s.reactor;
  counter("rumor_reactor_turns_total", "", r.turns, "Reactor loop turns.");
  counter("rumor_reactor_idle_turns_total", "", r.idle_turns,
          "Turns that received nothing (timers and wake-ups).");
  counter("rumor_reactor_batches_total", "", r.batches, "Receive batches processed.");
  gauge("rumor_reactor_batch_max", "", r.batch_max, "Largest receive batch.");
  counter("rumor_reactor_commands_total", "", r.commands_run, "Admin commands run.");
  counter("rumor_reactor_doorbells_total", "", r.doorbells_rung,
          "Wake-ups of a sleeping reactor.");
  counter("rumor_reactor_poll_errors_total", "", r.poll_errors, "Transport poll failures.");
  // The data directory (docs/store.md "Durability").
  if (const auto& d = s.durable) {
    counter("rumor_durable_commits_total", "", d->commits, "Commits to the data directory.");
    counter("rumor_durable_synced_commits_total", "", d->synced_commits,
            "Commits synced to disk (fsync).");
    counter("rumor_durable_records_total", "op=\"put\"", d->records_written,
            "Entries written to and erased from the data directory.");
    counter("rumor_durable_records_total", "op=\"erase\"", d->erases_written,
            "Entries written to and erased from the data directory.");
    counter("rumor_durable_queue_full_total", "", d->queue_full,
            "Journal records dropped by a full queue (each recovered by a rewrite).");
    counter("rumor_durable_rewrites_total", "", d->rewrites,
            "Cores rewritten from memory after a dropped record.");
    counter("rumor_durable_commit_errors_total", "", d->commit_errors,
            "Failed commits (retried; the agent logs the error).");
    gauge("rumor_durable_last_commit_seconds", "", static_cast<double>(d->last_commit_us) / 1e6,
          "Duration of the last commit, fsync included.");
    gauge("rumor_durable_bytes", "", d->file_bytes,
          "Bytes of the data directory's live tables and logs.");
    gauge("rumor_durable_loaded_entries", "", d->loaded_entries + d->loaded_tombstones,
          "Entries and tombstones loaded from the data directory at start.");
  }
  return m;
}

std::string render_prometheus(const Snapshot& s, const AgentInfo& info) {
  std::string out;
  std::string last;
  for (const Metric& m : collect_metrics(s)) {
    if (m.name != last) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name, m.type);
      last = m.name;
    }
    if (m.labels.empty()) {
      out += fmt::format("{} {}\n", m.name, format_value(m.value));
    } else {
      out += fmt::format("{}{{{}}} {}\n", m.name, m.labels, format_value(m.value));
    }
  }
  // The histogram.
  const LagHistogram& h = s.lag;
  out +=
      "# HELP rumor_convergence_lag_seconds Time from a write at its writer (HLC physical "
      "time) to its merge here, for changes from other nodes.\n"
      "# TYPE rumor_convergence_lag_seconds histogram\n";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < LagHistogram::kBoundsSeconds.size(); ++i) {
    cumulative += h.buckets[i];
    out += fmt::format("rumor_convergence_lag_seconds_bucket{{le=\"{}\"}} {}\n",
                       format_value(LagHistogram::kBoundsSeconds[i]), cumulative);
  }
  cumulative += h.buckets.back();
  out += fmt::format("rumor_convergence_lag_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  out += fmt::format("rumor_convergence_lag_seconds_sum {}\n", format_value(h.sum_seconds));
  out += fmt::format("rumor_convergence_lag_seconds_count {}\n", h.count);
  // Who is this.
  auto esc = [](const std::string& v) {
    std::string o;
    for (char c : v) {
      if (c == '\\' || c == '"') o.push_back('\\');
      if (c == '\n') {
        o += "\\n";
        continue;
      }
      o.push_back(c);
    }
    return o;
  };
  out += "# HELP rumor_info The agent's name, I/O backend and release.\n# TYPE rumor_info gauge\n";
  out += fmt::format("rumor_info{{name=\"{}\",backend=\"{}\",version=\"{}\"}} 1\n",
                     esc(info.name), esc(info.backend), esc(info.version));
  return out;
}

std::vector<std::pair<std::string, std::string>> stats_rows(const Snapshot& s) {
  std::vector<std::pair<std::string, std::string>> rows;
  for (const Metric& m : collect_metrics(s)) {
    std::string name = m.name;
    if (!m.labels.empty()) name += "{" + m.labels + "}";
    rows.emplace_back(std::move(name), format_value(m.value));
  }
  rows.emplace_back("rumor_convergence_lag_count", std::to_string(s.lag.count));
  rows.emplace_back("rumor_convergence_lag_mean_seconds",
                    format_value(s.lag.count ? s.lag.sum_seconds / s.lag.count : 0));
  return rows;
}

}  // namespace rumor::tools
