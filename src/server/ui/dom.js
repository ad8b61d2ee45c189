// Building the page: elements from data (text only, never markup from the server),
// the formats of times and durations, and two small SVG charts.

/** An element: `h("a", { href, class: "x", onclick }, "text", child, [more])`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element, attributes as for `h`. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "color") el.style.background = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table; `rows` are arrays of cells (text or nodes) or `{ cells, class }`. */
export function table(headers, rows, empty = "none") {
  const body = rows.length
    ? rows.map((r) => {
        const row = Array.isArray(r) ? { cells: r } : r;
        return h("tr", { class: row.class, "data-key": row.key },
          row.cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))));
      })
    : [h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, empty))];
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, body));
}

/** A panel with a heading. */
export function panel(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

export function badge(state) {
  return h("span", { class: `badge s-${state}` }, state || "-");
}

/** `1.2s`, `3m 4s`, `2h 5m` from milliseconds. */
export function dur(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)}s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m ${Math.floor(sec % 60)}s`;
  const hr = Math.floor(min / 60);
  if (hr < 48) return `${hr}h ${min % 60}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** How long ago an instant (RFC 3339) was. */
export function ago(iso) {
  if (!iso) return "-";
  const ms = Date.now() - Date.parse(iso);
  return ms < 0 ? "just now" : `${dur(ms)} ago`;
}

/** `HH:MM:SS.mmm` of an instant, local time; the full instant in its title. */
export function clock(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  const text = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  return h("span", { title: d.toISOString() }, text);
}

/** A long id cut to `n` characters, whole in its title. */
export function short(id, n = 28) {
  if (!id || id.length <= n) return id || "-";
  return h("span", { title: id }, `${id.slice(0, n)}…`);
}

/** A link to an execution's page. */
export function execLink(queue, id) {
  return h("a", { href: `#/e/${encodeURIComponent(queue)}/${encodeURIComponent(id)}` }, `${queue}/${id}`);
}

const PALETTE = ["#2f5bea", "#e4572e", "#f3a712", "#29a36a", "#8e44ad", "#17becf", "#c2185b", "#7f7f7f"];
const known = new Map();

/** A stable color per reason. */
export function colorOf(reason) {
  if (!known.has(reason)) known.set(reason, PALETTE[known.size % PALETTE.length]);
  return known.get(reason);
}

/** Stacked bars per minute: `minutes` as /v1/watchdog/activity answers. */
export function actionsChart(minutes) {
  const W = 600, H = 160, left = 28, bottom = 18;
  const totals = minutes.map((m) => Object.values(m.actions).reduce((a, b) => a + b, 0));
  const top = Math.max(1, ...totals);
  const bw = (W - left) / Math.max(1, minutes.length);
  const chart = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H + bottom}`, role: "img",
    "aria-label": "watchdog actions per minute by reason" });
  chart.append(s("text", { x: 0, y: 10 }, String(top)), s("text", { x: 0, y: H }, "0"));
  minutes.forEach((m, i) => {
    let y = H;
    for (const [reason, n] of Object.entries(m.actions)) {
      const bh = (n / top) * (H - 12);
      y -= bh;
      chart.append(s("rect", { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: bh,
        fill: colorOf(reason) }, s("title", {}, `${new Date(m.minute).toLocaleTimeString()}: ${n} ${reason}`)));
    }
    if (i % 5 === 0 || i === minutes.length - 1) {
      const d = new Date(m.minute);
      chart.append(s("text", { x: left + i * bw, y: H + 14 },
        `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`));
    }
  });
  return chart;
}

/** The legend of the reasons in `names`. */
export function legend(names) {
  return h("div", { class: "legend" }, names.map((n) => h("span", {}, h("i", { color: colorOf(n) }), n)));
}

/** The lag histogram: `buckets` as /v1/watchdog/activity answers. */
export function lagChart(buckets) {
  const W = 600, H = 140, bottom = 18;
  const top = Math.max(1, ...buckets.map((b) => b.count));
  const bw = W / buckets.length;
  const chart = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H + bottom}`, role: "img",
    "aria-label": "detection lag distribution" });
  buckets.forEach((b, i) => {
    const bh = (b.count / top) * (H - 14);
    const label = b.le_ms === null ? `>${dur(buckets[i - 1].le_ms)}` : `≤${dur(b.le_ms)}`;
    chart.append(
      s("rect", { x: i * bw + 2, y: H - bh, width: bw - 4, height: bh, fill: "#2f5bea" },
        s("title", {}, `${b.count} actions ${label}`)),
      s("text", { x: i * bw + 4, y: H + 14 }, label),
    );
    if (b.count) chart.append(s("text", { x: i * bw + 4, y: H - bh - 2 }, String(b.count)));
  });
  return chart;
}
