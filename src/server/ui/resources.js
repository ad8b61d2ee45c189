// "Resources": every resource lease held now — the resource, held of capacity, and each
// holder (its execution, attempt, since when, its ttl), live; an admin token gets a Force
// release button per holder (it asks the reason).

import { api, liveList } from "./api.js";
import { ago, clock, execLink, h, panel, put, table } from "./dom.js";

/** Force-releases the unit `holder` holds of `resource`, with the reason typed in. */
async function forceRelease(resource, holder, reason, message, reload) {
  if (!reason.trim()) {
    put(message, h("span", { class: "error" }, "say why: the reason is recorded in the event"));
    return;
  }
  try {
    const r = await api(`/v1/resources/${encodeURIComponent(resource)}/release`,
      { method: "POST", body: { queue: holder.queue, id: holder.id, reason } });
    put(message, r.released ? `released ${resource} held by ${holder.queue}/${holder.id} (attempt ${r.attempt})`
      : `${holder.queue}/${holder.id} no longer held ${resource}`);
    reload();
  } catch (err) {
    put(message, h("span", { class: "error" }, err.message));
  }
}

function releaseControl(resource, holder, message, reload) {
  const reason = h("input", { name: "reason", placeholder: "why", size: 18 });
  return h("span", { class: "actions" }, reason, h("button", { type: "button", "data-action": "force-release",
    onclick: async (ev) => {
      ev.target.disabled = true;
      await forceRelease(resource, holder, reason.value, message, reload);
      ev.target.disabled = false;
    } }, "Force release"));
}

/** The view. */
export function resources(root, session) {
  const admin = session && session.scope === "admin";
  const body = h("div");
  const message = h("p", { class: "note" });
  const error = h("p", { class: "error" });
  put(root, h("h1", {}, "Resources"), message, error,
    panel("Resource leases held now: a unit is freed by its holder, its ttl, or when the holding attempt ends", body));
  const live = liveList({
    onError: (text) => put(error, text),
    wanted: (e) => e.reason.startsWith("resource_"),
    delay: 300,
    render: async () => {
      const { resources: list } = await api("/v1/resources");
      const headers = ["Resource", "Held", "Holder", "Attempt", "Since", "Expires"];
      if (admin) headers.push("Force release");
      const rows = [];
      for (const r of list) {
        for (const holder of r.holders) {
          const cells = [h("span", { "data-resource": r.resource }, r.resource), `${r.held} of ${r.capacity}`,
            execLink(holder.queue, holder.id), String(holder.attempt),
            [clock(holder.since), " (", ago(holder.since), ")"],
            holder.expires_at ? clock(holder.expires_at) : "-"];
          if (admin) cells.push(releaseControl(r.resource, holder, message, () => live.load()));
          rows.push({ key: `${r.resource}|${holder.queue}/${holder.id}`, cells });
        }
      }
      put(body, table(headers, rows, "no resource is held"));
    },
  });
  return live.stop;
}
