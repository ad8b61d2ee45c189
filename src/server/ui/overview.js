// The overview: queues (and their pauses), what the watchdog did (actions per minute by reason, detection
// lag), who holds each partition, the workers, and the newest watchdog actions live.

import { api } from "./api.js";
import { actionsChart, ago, clock, dur, h, lagChart, legend, panel, put, short, table } from "./dom.js";
import { feed } from "./feed.js";
import { queuesPanel } from "./queues.js";

/**
 * The watchdog's status and its health verdict, as GET /v1/watchdog serves them:
 * { status, health }. With Redis unreachable the server answers a 503 problem that still
 * carries the verdict; `status` is then null. The verdict is the server's, never judged here.
 */
export async function watchdogHealth() {
  try {
    const w = await api("/v1/watchdog");
    return { status: w, health: w.health };
  } catch (error) {
    if (error.problem && error.problem.health) return { status: null, health: error.problem.health };
    throw error;
  }
}

/** The verdict, its one-line summary and each reason with its code. */
export function healthView(health) {
  const healthy = health.verdict === "healthy";
  return [
    h("p", {}, h("span", { class: `verdict ${health.verdict}`, "data-verdict": health.verdict }, health.verdict),
      " — ", h("span", { class: "summary" }, health.summary.replace(/^(healthy|degraded): /, ""))),
    healthy ? null : h("ul", { class: "reasons" }, health.reasons.map((r) =>
      h("li", { "data-code": r.code }, h("code", {}, r.code), " ", r.message))),
  ];
}

function watchdogFacts(w, health) {
  if (!w) return healthView(health);
  const t = w.totals;
  return [
    healthView(health),
    h("dl", { class: "facts" },
      h("dt", {}, "replicas"), h("dd", {}, w.replicas.length ? w.replicas.map((r) => `${r.replica_id} (beat ${ago(r.last_beat_at)})`).join(", ") : "none"),
      h("dt", {}, "totals"), h("dd", {}, `timed out ${t.timed_out} · stuck ${t.stuck} · retried ${t.retried} · dead ${t.dead} · cancelled ${t.cancelled} · orphaned ${t.orphaned} · holds ${t.holds} · pruned ${t.pruned} · wait expired ${t.wait_expired}`)),
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

// Worker ids, hosts and queue lists are long: those cells wrap, so every column (held,
// tier) stays in view without scrolling the panel.
function workersTable(workers) {
  return table(["Worker", "Host", "Pid", "Version", "Queues", "Last beat", "Held", "Tier"], workers.map((w) => [
    h("td", { class: "wrap" }, h("a", { href: `#/executions?worker=${encodeURIComponent(w.worker_id)}` }, w.worker_id)),
    h("td", { class: "wrap" }, w.host), String(w.pid), w.version || "-", h("td", { class: "wrap" }, w.queues.join(", ")),
    ago(w.last_seen_at),
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

/**
 * Renders the overview into `root` (pause and resume for an admin `session`); returns the
 * function that stops its updates.
 */
export function overview(root, session) {
  let refresh = () => {};
  const queues = queuesPanel(session, () => refresh());
  const parts = {
    watchdog: h("div"), queues: queues.el, actions: h("div"), lag: h("div"),
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
    panel("Workers", parts.workers),
    panel("Partitions", parts.partitions),
    panel("Worker remediation (newest)", parts.remediation),
  );
  let activityAt = 0;
  refresh = async () => {
    try {
      const rest = Promise.all([api("/v1/queues"), api("/v1/workers"), api("/v1/workers/events?newest=true&limit=10")]);
      rest.catch(() => {}); // reported below, once the verdict is drawn
      // The verdict is drawn on its own: with Redis unreachable it is all there is to show.
      const { status: w, health } = await watchdogHealth();
      put(parts.watchdog, watchdogFacts(w, health));
      if (w) put(parts.partitions, partitionsTable(w));
      const [q, workers, remediation] = await rest;
      queues.update(q.queues);
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
