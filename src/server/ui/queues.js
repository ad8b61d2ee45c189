// The queues panel of the overview: each queue's counts, its pause (a badge with since
// when, by whom and why, and a banner line per paused queue), and — for an admin token —
// pause and resume buttons. The pause form sits outside the table, so the table's
// refresh every few seconds does not wipe a reason being typed.

import { api } from "./api.js";
import { ago, dur, h, put, table } from "./dom.js";

const path = (queue, action) => `/v1/queues/${encodeURIComponent(queue)}/${action}`;

/** One line saying a queue is paused: since when, by whom, why. */
export function pausedLine(q) {
  const p = q.pause;
  const budget = p.by === "budget";
  return h("p", { class: "paused-banner", "data-paused": q.name, "data-budget-paused": budget ? q.name : undefined },
    h("strong", {}, budget ? `Queue ${q.name} spent its window budget` : `Queue ${q.name} is paused`),
    ` (${ago(p.since)}, by ${p.by}): ${p.reason}`,
    " — nothing is claimed from it; running work goes on and is still judged.",
    budget ? " Raise its window budget or resume it to let work go on." : "");
}

/** The panel's content: `update(queues)` redraws it; admins get pause and resume. */
export function queuesPanel(session, onChange) {
  const admin = Boolean(session && session.can_admin);
  const banners = h("div");
  const body = h("div");
  const form = h("div");
  const message = h("p", { class: "note" });
  const el = h("div", {}, banners, body, form, message);

  const act = async (queue, action, reason) => {
    try {
      const r = await api(path(queue, action), { method: "POST", body: reason ? { reason } : {} });
      put(message, r.changed ? `${queue} ${r.paused ? "paused" : "resumed"}`
        : `${queue} was already ${r.paused ? "paused" : "running"}: nothing changed`);
      put(form);
      onChange();
    } catch (err) {
      put(message, h("span", { class: "error" }, err.message));
    }
  };
  const askReason = (queue) => {
    const reason = h("input", { name: "pause-reason", size: 40, placeholder: "why (required)" });
    const submit = h("button", { type: "submit", class: "danger", "data-action": "pause-confirm" }, `Pause ${queue}`);
    put(form, h("form", { class: "inline", "data-pause-form": queue, onsubmit: (ev) => {
      ev.preventDefault();
      if (!reason.value.trim()) return put(message, h("span", { class: "error" }, "say why the queue is paused"));
      submit.disabled = true;
      act(queue, "pause", reason.value.trim());
    } }, h("label", {}, `Reason to pause ${queue}`, reason), submit,
      h("button", { type: "button", onclick: () => put(form) }, "Keep it running")));
    reason.focus();
  };
  const control = (q) => q.paused
    ? h("button", { type: "button", "data-action": "resume", "data-queue": q.name,
      onclick: (ev) => { ev.target.disabled = true; act(q.name, "resume", "resumed from the dashboard"); } }, "Resume")
    : h("button", { type: "button", "data-action": "pause", "data-queue": q.name, onclick: () => askReason(q.name) }, "Pause…");

  const update = (queues) => {
    put(banners, queues.filter((q) => q.paused).map(pausedLine));
    const headers = ["Queue", "Depth", "Available", "Slots", "Oldest queued", "Partition", "Usage (window)", "Paused"];
    put(body, table(admin ? [...headers, ""] : headers, queues.map((q) => ({
      key: q.name,
      class: q.paused ? "paused" : undefined,
      cells: [
        h("a", { href: `#/executions?queue=${encodeURIComponent(q.name)}` }, q.name),
        h("td", { class: "num" }, String(q.depth)),
        h("td", { class: "num" }, String(q.available)),
        h("td", { class: "num" }, `${q.active} / ${q.capacity}`),
        dur(q.oldest_queued_age_ms),
        String(q.partition),
        h("span", { "data-usage-queue": q.name }, "-"),
        q.paused ? h("span", { class: "badge s-paused", "data-paused": q.name,
          title: `paused ${ago(q.pause.since)} by ${q.pause.by}: ${q.pause.reason}` }, "paused") : "-",
        ...(admin ? [control(q)] : []),
      ],
    })), "no queue yet"));
    // Each queue's usage over its rolling window (tokens, cost) against its window budget.
    for (const q of queues) {
      api(path(q.name, "usage")).then((u) => {
        const cell = body.querySelector(`[data-usage-queue="${CSS.escape(q.name)}"]`);
        if (!cell || !u) return;
        const tokens = u.window.input_tokens + u.window.output_tokens;
        const limit = u.window_budget && u.window_budget.tokens ? ` of ${u.window_budget.tokens}` : "";
        cell.setAttribute("data-window-tokens", String(tokens));
        cell.textContent = tokens || u.window.cost ? `${tokens}${limit} tokens, ${u.window.cost} µ${u.currency}` : "-";
      }).catch(() => {});
    }
  };
  return { el, update };
}
