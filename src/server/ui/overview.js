// The overview: queues, what the watchdog did (actions per minute by reason, detection
// lag), who holds each partition, the workers, and the newest watchdog actions live.

import { api } from "./api.js";
import { actionsChart, ago, clock, dur, h, lagChart, legend, panel, put, short, table } from "./dom.js";
import { feed } from "./feed.js";

/** The one-line verdict of a /v1/watchdog answer: [healthy, why]. */
export function verdict(w) {
  const why = [];
  if (!w.replicas.length) why.push("no watchdog replica is alive");
  const unwatched = w.partitions.filter((p) => !p.owner).map((p) => p.partition);
  if (w.replicas.length && unwatched.length) why.push(`${unwatched.length} partition(s) unwatched: ${unwatched.join(", ")}`);
  const holding = w.partitions.filter((p) => p.hold_until);
  if (w.namespace_hold) why.push(`systemic hold over the namespace until ${new Date(w.namespace_hold.until).toLocaleTimeString()}`);
  else if (holding.length) why.push(`systemic hold on ${holding.length} partition(s)`);
  return [why.length === 0, why.length ? why.join("; ") : "every partition is watched, no hold in force"];
}

function queuesTable(queues) {
  return table(["Queue", "Depth", "Available", "Slots", "Oldest queued", "Partition"], queues.map((q) => ({
    key: q.name,
    cells: [
      h("a", { href: `#/executions?queue=${encodeURIComponent(q.name)}` }, q.name),
      h("td", { class: "num" }, String(q.depth)),
      h("td", { class: "num" }, String(q.available)),
      h("td", { class: "num" }, `${q.active} / ${q.capacity}`),
      dur(q.oldest_queued_age_ms),
      String(q.partition),
    ],
  })), "no queue yet");
}

function watchdogFacts(w) {
  const [healthy, why] = verdict(w);
  const t = w.totals;
  return [
    h("p", {}, h("span", { class: `verdict ${healthy ? "healthy" : "degraded"}`, "data-verdict": healthy ? "healthy" : "degraded" },
      healthy ? "healthy" : "degraded"), " — ", why),
    h("dl", { class: "facts" },
      h("dt", {}, "replicas"), h("dd", {}, w.replicas.length ? w.replicas.map((r) => `${r.replica_id} (beat ${ago(r.last_beat_at)})`).join(", ") : "none"),
      h("dt", {}, "totals"), h("dd", {}, `timed out ${t.timed_out} · stuck ${t.stuck} · retried ${t.retried} · dead ${t.dead} · cancelled ${t.cancelled} · orphaned ${t.orphaned} · holds ${t.holds} · pruned ${t.pruned}`)),
  ];
}

function partitionsTable(w) {
  return table(["Partition", "Owner", "Epoch", "Lease expires", "Last round", "Hold"], w.partitions.map((p) => [
    String(p.partition), p.owner ? short(p.owner) : h("span", { class: "error" }, "unwatched"), p.epoch ?? "-",
    p.lease_expires_at ? clock(p.lease_expires_at) : "-", p.last_round_at ? ago(p.last_round_at) : "-",
    p.hold_until ? `until ${new Date(p.hold_until).toLocaleTimeString()}: ${p.hold_reason || ""}` : "",
  ]));
}

// A worker's remediation: "-" (tier 0), the tier reached, or "circuit open" (unstuck no
// longer acts on it until an operator resets it).
function tierCell(r) {
  if (!r) return "-";
  if (r.circuit_open) return h("span", { class: "error", title: r.circuit_reason || "" }, "circuit open");
  return r.tier ? h("span", { title: r.verdict || "" }, `tier ${r.tier}`) : "-";
}

function workersTable(workers) {
  return table(["Worker", "Host", "Pid", "Version", "Queues", "Last beat", "Held", "Tier"], workers.map((w) => [
    h("a", { href: `#/executions?worker=${encodeURIComponent(w.worker_id)}` }, w.worker_id),
    w.host, String(w.pid), w.version || "-", w.queues.join(", "), ago(w.last_seen_at),
    h("td", { class: "num" }, String((w.held || []).length)),
    tierCell(w.remediation),
  ]), "no worker registered");
}

// The newest worker remediation events, newest first: tier changes, actions, hooks.
function workerEventsTable(events) {
  return table(["At", "Worker", "Tier", "Reason", "Detail"], events.slice().reverse().map((e) => [
    clock(e.at), e.worker_id ? short(e.worker_id) : "-",
    e.from_tier === e.to_tier ? String(e.to_tier) : `${e.from_tier} → ${e.to_tier}`,
    e.reason, short(e.detail, 90),
  ]), "no worker remediation yet");
}

function activityView(a) {
  const reasons = Object.keys(a.totals);
  const lag = a.lag;
  return {
    actions: [
      actionsChart(a.minutes), legend(reasons),
      h("p", { class: "muted" }, reasons.length ? reasons.map((r) => `${r} ${a.totals[r]}`).join(" · ") : "no watchdog action in the last 30 minutes",
        a.truncated ? " (busy: the newest events only)" : ""),
    ],
    lag: [
      lagChart(lag.buckets),
      h("p", { class: "muted" }, lag.count
        ? `${lag.count} timed actions · p50 ${dur(lag.p50_ms)} · p90 ${dur(lag.p90_ms)} · p99 ${dur(lag.p99_ms)} · max ${dur(lag.max_ms)}`
        : "no timed action in the last 30 minutes"),
    ],
  };
}

/** Renders the overview into `root`; returns the function that stops its updates. */
export function overview(root) {
  const parts = {
    watchdog: h("div"), queues: h("div"), actions: h("div"), lag: h("div"),
    partitions: h("div"), workers: h("div"), remediation: h("div"), error: h("p", { class: "error" }),
  };
  const live = feed({ limit: 15, toggle: false });
  put(root,
    h("h1", {}, "Overview"), parts.error,
    h("div", { class: "grid" }, panel("Watchdog", parts.watchdog), panel("Queues", parts.queues)),
    h("div", { class: "grid" },
      panel("Watchdog actions per minute, by reason (30 min)", parts.actions),
      panel("Detection lag (timer due → action)", parts.lag)),
    panel("Newest watchdog actions (live)", live.el),
    h("div", { class: "grid" }, panel("Partitions", parts.partitions), panel("Workers", parts.workers)),
    panel("Worker remediation (newest)", parts.remediation),
  );
  let activityAt = 0;
  const refresh = async () => {
    try {
      const [w, q, workers, remediation] = await Promise.all([api("/v1/watchdog"), api("/v1/queues"),
        api("/v1/workers"), api("/v1/workers/events?newest=true&limit=10")]);
      put(parts.watchdog, watchdogFacts(w));
      put(parts.queues, queuesTable(q.queues));
      put(parts.partitions, partitionsTable(w));
      put(parts.workers, workersTable(workers.workers));
      put(parts.remediation, workerEventsTable(remediation.events));
      if (Date.now() - activityAt > 15000) {
        activityAt = Date.now();
        const view = activityView(await api("/v1/watchdog/activity?minutes=30"));
        put(parts.actions, view.actions);
        put(parts.lag, view.lag);
      }
      put(parts.error);
    } catch (error) {
      put(parts.error, `could not refresh: ${error.message}`);
    }
  };
  refresh();
  const timer = setInterval(refresh, 5000);
  return () => {
    clearInterval(timer);
    live.stop();
  };
}
