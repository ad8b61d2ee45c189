// Executions: the filtered, paged table (live), and one execution's page with its
// timeline, timings, checkpoint, stop metadata, attempts and retries, and — for an admin
// token — cancel, retry and resume.

import { api, follow, liveList, query } from "./api.js";
import { ago, badge, clock, dur, execLink, h, panel, put, short, table } from "./dom.js";
import { pausedLine } from "./queues.js";
import { resumeControl } from "./waiting.js";

const STATES = ["queued", "dispatched", "running", "stuck", "awaiting", "succeeded", "failed", "cancelled", "timed_out", "dead"];
const STOP_REASONS = ["succeeded", "failed", "cancelled", "deadline_exceeded", "heartbeat_lost", "no_progress",
  "looping", "start_timeout", "worker_lost", "wait_expired"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "dead"]);

function changedAt(e) {
  return e.finished_at || e.stuck_since || (e.wait && e.wait.since) || e.last_heartbeat_at || e.started_at || e.dispatched_at || e.created_at;
}

function select(name, value, options) {
  return h("select", { name }, h("option", { value: "" }, "any"),
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

/** The executions table for `params` (queue, state, stop_reason, worker, cursor). */
export function executions(root, params) {
  const filters = {
    queue: params.get("queue") || "", state: params.get("state") || "",
    stop_reason: params.get("stop_reason") || "", worker: params.get("worker") || "",
  };
  const cursors = [params.get("cursor") || ""];
  const queueSelect = select("queue", filters.queue, filters.queue ? [filters.queue] : []);
  const form = h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const k of ["queue", "state", "stop_reason", "worker"]) if (data.get(k)) next.set(k, data.get(k));
    location.hash = `#/executions${next.toString() ? `?${next}` : ""}`;
  } },
    h("label", {}, "Queue", queueSelect),
    h("label", {}, "State", select("state", filters.state, STATES)),
    h("label", {}, "Stop reason", select("stop_reason", filters.stop_reason, STOP_REASONS)),
    h("label", {}, "Worker", h("input", { name: "worker", value: filters.worker, placeholder: "worker id" })),
    h("button", { type: "submit" }, "Filter"));
  const body = h("div");
  const pager = h("div", { class: "pager" });
  const error = h("p", { class: "error" });
  const paused = h("div");
  put(root, h("h1", {}, "Executions"), paused, panel("Filters", form), error, panel("Newest first", body, pager));

  api("/v1/queues").then((q) => {
    const names = q.queues.map((x) => x.name);
    put(paused, q.queues.filter((x) => x.paused && x.name === filters.queue).map(pausedLine));
    put(queueSelect, h("option", { value: "" }, "any"),
      [...new Set([...names, filters.queue].filter(Boolean))].map((n) => h("option", { value: n, selected: n === filters.queue }, n)));
  }).catch(() => {});

  // Live: any transition (of the filtered queue) reloads the page shown, at most every 1.5 s.
  const live = liveList({
    queue: filters.queue || undefined,
    onError: (message) => put(error, message),
    render: async () => {
      const cursor = cursors[cursors.length - 1];
      const page = await api(`/v1/executions${query({ ...filters, cursor, limit: 50 })}`);
      put(body, table(["Execution", "State", "Attempt", "Worker", "Changed", "Stop", "Last error"], page.items.map((e) => ({
        key: `${e.queue}/${e.id}`,
        cells: [execLink(e.queue, e.id), badge(e.state), h("td", { class: "num" }, String(e.attempt)), e.worker || "-",
          ago(changedAt(e)), e.stop ? e.stop.reason : "-", h("td", { class: "wrap" }, e.last_error || "")],
      })), "no execution matches"));
      put(pager,
        h("button", { type: "button", disabled: cursors.length === 1, onclick: () => { cursors.pop(); live.load(); } }, "← Newer"),
        h("span", { class: "muted" }, `page ${cursors.length}`),
        h("button", { type: "button", disabled: !page.next_cursor, "data-next": page.next_cursor || "",
          onclick: () => { cursors.push(page.next_cursor); live.load(); } }, "Older →"));
    },
  });
  return live.stop;
}

function timingValue(name, v) {
  if (v === null || v === undefined) return "off";
  return ["max_attempts", "max_snoozes", "max_repeats"].includes(name) ? String(v) : dur(v);
}

/** Loop detection: the last fingerprint and its run, against max_repeats when set. */
function fingerprint(e) {
  if (!e.fingerprint) return "-";
  const { last, repeats } = e.fingerprint;
  const of = e.timings.max_repeats ? ` of max_repeats ${e.timings.max_repeats}` : "";
  return h("span", { "data-fingerprint": last, "data-repeats": String(repeats) },
    h("code", {}, last), ` (${repeats} in a row${of})`);
}

/** When a queued execution becomes claimable: "now", or the instant and how long until. */
function availability(iso) {
  const ms = Date.parse(iso) - Date.now();
  return ms <= 0 ? [clock(iso), " (claimable now)"] : [clock(iso), ` (in ${dur(ms)})`];
}

function json(value) {
  return value === null || value === undefined ? h("span", { class: "muted" }, "none") : h("pre", {}, JSON.stringify(value, null, 2));
}

/** The attempts, from the timeline: when each began, where it ended and why. */
function attemptsOf(timeline) {
  const byAttempt = new Map();
  for (const t of timeline) {
    if (!t.attempt) continue;
    const a = byAttempt.get(t.attempt) || { attempt: t.attempt, began: t.at, last: t };
    a.last = t;
    byAttempt.set(t.attempt, a);
  }
  return [...byAttempt.values()];
}

// The server's timeline: every transition of the execution's history, with the event's
// details where the capped stream still holds it; a row from history alone says so.
function timelineTable(timeline) {
  return table(["At", "Att", "Transition", "Reason", "Lag", "By", "Detail"], timeline.map((e) => ({
    class: e.replica ? "action" : e.source === "history" ? "trimmed" : undefined,
    cells: [clock(e.at), String(e.attempt), [e.from ? badge(e.from) : "", " → ", badge(e.to)], e.reason,
      e.lag_ms === null || e.lag_ms === undefined ? "" : dur(e.lag_ms), e.replica ? [short(e.replica, 20), ` #${e.epoch}`] : "",
      e.source === "history" ? h("td", { class: "muted", "data-source": "history" }, "from history (event trimmed)")
        : h("td", { class: "wrap" }, e.detail)],
  })));
}

function actionsFor(e, session, reload, message) {
  if (!session || session.scope !== "admin") return null;
  const controls = [];
  if (e.state === "awaiting") controls.push(resumeControl(e, message, reload));
  if (!TERMINAL.has(e.state)) {
    const reason = h("input", { name: "reason", value: "cancelled from the dashboard", size: 32 });
    controls.push(h("label", {}, "Reason", reason), h("button", { type: "button", class: "danger", "data-action": "cancel",
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const r = await api(`/v1/queues/${encodeURIComponent(e.queue)}/executions/${encodeURIComponent(e.id)}/cancel`,
            { method: "POST", body: { reason: reason.value } });
          put(message, r.outcome === "cancelled" ? "cancelled" : "its worker is asked to stop");
          reload();
        } catch (err) {
          put(message, h("span", { class: "error" }, err.message));
          ev.target.disabled = false;
        }
      } }, "Cancel"));
  } else if (e.state !== "succeeded") {
    controls.push(h("button", { type: "button", "data-action": "retry", onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        const r = await api(`/v1/queues/${encodeURIComponent(e.queue)}/executions/${encodeURIComponent(e.id)}/retry`,
          { method: "POST", body: { reason: "retried from the dashboard" } });
        put(message, "runs again as ", execLink(r.queue, r.id));
        reload();
      } catch (err) {
        put(message, h("span", { class: "error" }, err.message));
        ev.target.disabled = false;
      }
    } }, "Retry as a new execution"));
  }
  return controls.length ? panel("Actions", h("div", { class: "actions" }, controls)) : null;
}

/** One execution's page. */
export function execution(root, queue, id, session) {
  const content = h("div");
  const note = h("p", { class: "note" });
  put(root, h("h1", {}, `${queue}/${id}`), note, content);
  const base = `/v1/queues/${encodeURIComponent(queue)}/executions/${encodeURIComponent(id)}`;
  const load = async () => {
    try {
      const [e, ev] = await Promise.all([api(base), api(`${base}/events`)]);
      const timeline = ev.timeline;
      const trimmed = timeline.filter((t) => t.source === "history").length;
      const actions = actionsFor(e, session, load, note);
      const facts = [
        ["state", [badge(e.state), " attempt ", String(e.attempt)]], ["worker", e.worker || "-"],
        ["created", [clock(e.created_at), " (", ago(e.created_at), ")"]],
        ["dispatched", clock(e.dispatched_at)], ["started", clock(e.started_at)],
        ["last heartbeat", e.last_heartbeat_at ? [clock(e.last_heartbeat_at), " (", ago(e.last_heartbeat_at), ")"] : "-"],
        ["progress", e.progress ? [e.progress, " (changed ", ago(e.progress_changed_at), ")"] : "-"],
        ["fingerprint", fingerprint(e)],
        ["stuck since", clock(e.stuck_since)], ["deadline", clock(e.deadline_at)],
        ["waiting for", e.wait ? [e.wait.reason, " (since ", ago(e.wait.since), "; deadline ", clock(e.wait.deadline_at),
          ", then ", e.wait.on_expiry, ")"] : "-"],
        ["resumed", e.resumed_at ? [clock(e.resumed_at), e.resume_input === null || e.resume_input === undefined ? ""
          : [" with ", JSON.stringify(e.resume_input)]] : "-"],
        ["cancel requested", clock(e.cancel_requested_at)], ["finished", clock(e.finished_at)],
        ["last error", e.last_error || "-"], ["false alarms", String(e.false_alarms)],
        ["usage", e.usage ? h("span", { "data-usage": String(e.usage.input_tokens + e.usage.output_tokens) },
          `${e.usage.input_tokens} in (${e.usage.cached_input_tokens} cached), ${e.usage.output_tokens} out, cost ${e.usage.cost} µ`
          + (Object.keys(e.usage.by_model).some((m) => m) ? `; models ${Object.keys(e.usage.by_model).join(", ")}` : "")) : "-"],
        ["budget", e.budget ? h("span", { "data-budget": e.cancel_reason || "" },
          `${e.budget.tokens ?? "-"} tokens, cost ${e.budget.cost ?? "-"}`
          + (e.cancel_reason ? ` — ${e.cancel_reason}` : "")) : (e.cancel_reason ? e.cancel_reason : "-")],
        ["available", e.state === "queued" && e.available_at
          ? h("span", { "data-available": e.available_at }, availability(e.available_at)) : "-"],
        ["snoozes", e.snoozes ? h("span", { "data-snoozes": String(e.snoozes) },
          `${e.snoozes} of ${e.timings.max_snoozes} allowed`) : "-"],
        ["continuations", e.continuations ? `${e.continuations} (not counted: ${e.attempt - e.continuations} of ${e.timings.max_attempts} attempts used)` : "-"],
        ["retry of", e.retry_of ? execLink(...e.retry_of.split(/\/(.*)/s)) : "-"],
        ["retries", e.retries.length ? e.retries.map((r, i) => [i ? ", " : "", execLink(e.queue, r)]) : "-"],
        ["traceparent", e.traceparent ? h("code", { "data-traceparent": e.traceparent }, e.traceparent) : "-"],
      ];
      const stop = e.stop
        ? h("dl", { class: "facts" }, h("dt", {}, "reason"), h("dd", {}, e.stop.reason),
          h("dt", {}, "timeout"), h("dd", {}, e.stop.timeout === null ? "-" : dur(e.stop.timeout)),
          h("dt", {}, "configured"), h("dd", {}, String(e.stop.timeout_configured)),
          h("dt", {}, "fired"), h("dd", {}, String(e.stop.timeout_fired)))
        : h("span", { class: "muted" }, "not finished");
      put(content,
        actions,
        h("div", { class: "grid" },
          panel("State", h("dl", { class: "facts", "data-state": e.state }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
          panel("Timings", table(["Timing", "Value"], Object.entries(e.timings).map(([k, v]) => [k, timingValue(k, v)])))),
        h("div", { class: "grid" }, panel("Stop", stop), panel("Checkpoint", json(e.checkpoint))),
        panel("Timeline", timelineTable(timeline),
          trimmed ? h("p", { class: "muted", "data-trimmed": String(trimmed) },
            `${trimmed} of ${timeline.length} transitions from the execution's history: the capped event stream ` +
            "no longer holds their events (no detail, lag or replica)") : null),
        h("div", { class: "grid" },
          panel("Attempts", table(["Attempt", "Began", "Last transition", "Reason"], attemptsOf(timeline).map((a) => [
            String(a.attempt), clock(a.began), badge(a.last.to), a.last.reason]))),
          panel("Payload", json(e.payload)), panel("Result", json(e.result))),
      );
    } catch (err) {
      put(content, h("p", { class: "error" }, err.status === 404 ? "no such execution" : `could not load: ${err.message}`));
    }
  };
  load();
  let timer = null;
  const stop = follow({ queue, onEvent: (e) => {
    if (e.execution_id !== id && !e.detail.includes(`${queue}/${id}`)) return;
    if (!timer) timer = setTimeout(() => { timer = null; load(); }, 300);
  } });
  return () => {
    stop();
    clearTimeout(timer);
  };
}
