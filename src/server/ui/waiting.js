// "Waiting on people": every awaiting execution — what it waits for, since when, until
// when — soonest deadline first, live; an admin token gets a Resume button (with an
// optional JSON input handed to the claim that continues it).

import { api, liveList, query } from "./api.js";
import { ago, clock, dur, execLink, h, panel, put, table } from "./dom.js";

/** Resumes `e` with the JSON in `input` (empty: no input); says so in `message`. */
export async function resume(e, input, message, reload) {
  let body = {};
  if (input.trim()) {
    try {
      body = { input: JSON.parse(input) };
    } catch (err) {
      put(message, h("span", { class: "error" }, `the input is not JSON: ${err.message}`));
      return;
    }
  }
  try {
    const r = await api(`/v1/queues/${encodeURIComponent(e.queue)}/executions/${encodeURIComponent(e.id)}/resume`,
      { method: "POST", body });
    put(message, r.already ? `${e.queue}/${e.id} was already resumed` : `resumed ${e.queue}/${e.id}: queued again`);
    reload();
  } catch (err) {
    put(message, h("span", { class: "error" }, err.message));
  }
}

/** The Resume control of one awaiting execution (admins only). */
export function resumeControl(e, message, reload) {
  const input = h("input", { name: "input", placeholder: '{"approved": true}', size: 22 });
  return h("span", { class: "actions" }, input, h("button", { type: "button", "data-action": "resume",
    onclick: async (ev) => {
      ev.target.disabled = true;
      await resume(e, input.value, message, reload);
      ev.target.disabled = false;
    } }, "Resume"));
}

function until(iso) {
  const ms = Date.parse(iso) - Date.now();
  return [clock(iso), " ", h("span", { class: "muted" }, ms > 0 ? `(in ${dur(ms)})` : "(due)")];
}

/** The view. */
export function waiting(root, session) {
  const admin = session && session.scope === "admin";
  const body = h("div");
  const message = h("p", { class: "note" });
  const error = h("p", { class: "error" });
  put(root, h("h1", {}, "Waiting on people"), message, error,
    panel("Awaiting executions: never judged stuck; each ends at its wait deadline unless resumed", body));
  const live = liveList({
    onError: (text) => put(error, text),
    wanted: (e) => ["awaiting", "resumed", "wait_expired", "cancelled", "deadline_exceeded"].includes(e.reason),
    delay: 500,
    render: async () => {
      const items = [];
      let cursor = "";
      do {
        const page = await api(`/v1/executions${query({ state: "awaiting", cursor, limit: 200 })}`);
        items.push(...page.items);
        cursor = page.next_cursor || "";
      } while (cursor && items.length < 1000);
      items.sort((a, b) => Date.parse(a.wait.deadline_at) - Date.parse(b.wait.deadline_at));
      const headers = ["Execution", "Waiting for", "Waiting since", "Deadline", "Then"];
      if (admin) headers.push("Resume");
      put(body, table(headers, items.map((e) => {
        const cells = [execLink(e.queue, e.id), h("td", { class: "wrap", "data-reason": "" }, e.wait.reason),
          [clock(e.wait.since), " (", ago(e.wait.since), ")"], until(e.wait.deadline_at), e.wait.on_expiry];
        if (admin) cells.push(resumeControl(e, message, () => live.load()));
        return { key: `${e.queue}/${e.id}`, cells };
      }), "nothing is waiting"));
    },
  });
  return live.stop;
}
