// The live feed: the newest transitions, then each new one as the event stream delivers
// it, newest on top. Watchdog actions (they name the replica that acted) stand out.

import { api, follow, query } from "./api.js";
import { badge, clock, dur, execLink, h, put, short } from "./dom.js";

function row(e, fresh) {
  const action = Boolean(e.replica);
  return h("tr", {
    class: [action ? "action" : "", fresh ? "fresh" : ""].join(" ").trim() || undefined,
    "data-execution": e.queue ? `${e.queue}/${e.execution_id}` : "",
    "data-reason": e.reason,
    "data-from": e.from || "",
    "data-to": e.to || "",
  },
    h("td", {}, clock(e.at)),
    h("td", {}, e.queue && e.execution_id ? execLink(e.queue, e.execution_id)
      : e.queue ? h("a", { href: `#/executions?queue=${encodeURIComponent(e.queue)}` }, `queue ${e.queue}`)
        : h("span", { class: "muted" }, `partition ${e.partition}`)),
    h("td", { class: "num" }, String(e.attempt)),
    h("td", {}, e.from ? badge(e.from) : "", " → ", e.to ? badge(e.to) : "-"),
    h("td", {}, e.reason),
    h("td", { class: "num" }, e.lag_ms === null || e.lag_ms === undefined ? "" : dur(e.lag_ms)),
    h("td", {}, action ? [short(e.replica, 20), ` #${e.epoch}`] : ""),
    h("td", { class: "wrap" }, e.detail),
  );
}

/**
 * A feed element and the function that stops it. `watchdogOnly` starts checked when
 * `toggle` is shown; `limit` rows are kept.
 */
export function feed({ limit = 200, watchdogOnly = true, toggle = true, queue } = {}) {
  let onlyActions = watchdogOnly;
  const events = [];
  const body = h("tbody");
  const status = h("span", { class: "muted" });
  const render = () => {
    const shown = events.filter((x) => !onlyActions || x.event.replica).slice(0, limit);
    put(body, shown.length ? shown.map((x) => row(x.event, x.fresh))
      : h("tr", {}, h("td", { colspan: 8, class: "muted" }, onlyActions ? "no watchdog action yet" : "no event yet")));
    for (const x of events) x.fresh = false;
  };
  // Thousands of transitions a second must not mean thousands of renders.
  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      render();
    }, 200);
  };
  const checkbox = h("input", { type: "checkbox", checked: onlyActions, onchange: (ev) => {
    onlyActions = ev.target.checked;
    render();
  } });
  const el = h("div", { class: "feed" },
    toggle ? h("form", { class: "inline" }, h("label", { class: "check" },
      h("span", {}, checkbox, " watchdog actions only"))) : null,
    h("table", {}, h("thead", {}, h("tr", {}, ["At", "Execution", "Att", "Transition", "Reason", "Lag", "By", "Detail"].map((x) => h("th", {}, x)))), body),
    status);
  let stop = () => {};
  let stopped = false;
  (async () => {
    let after;
    try {
      const recent = await api(`/v1/events/recent${query({ queue, limit: 1000 })}`);
      for (const e of recent.events) events.unshift({ event: e, fresh: false });
      after = recent.events.length ? recent.events[recent.events.length - 1].id : undefined;
    } catch (error) {
      put(status, h("span", { class: "error" }, `could not read events: ${error.message}`));
    }
    render();
    if (stopped) return;
    stop = follow({ queue, after, onEvent: (e) => {
      events.unshift({ event: e, fresh: true });
      if (events.length > 2000) events.length = 2000;
      schedule();
    } });
  })();
  return { el, stop: () => { stopped = true; stop(); } };
}
