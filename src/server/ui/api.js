// The HTTP API as the dashboard uses it: JSON calls with the operator's token, the
// token's scope, and the event stream followed over fetch (EventSource cannot send an
// Authorization header), resumed with Last-Event-ID after any break.

const TOKEN_KEY = "unstuck.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused call: the HTTP status and the problem document's detail. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

/** One call; resolves to the parsed reply, rejects with an ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const reply = await fetch(path, init);
  const text = await reply.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data;
}

/** A query string of the non-empty entries of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** What the token may do: { scope, open, can_read, can_steer, can_admin }. */
export function loadSession() {
  return api("/v1/session");
}

const listeners = new Set();
let streamState = "off";

/** Called with "on" / "off" whenever a followed stream connects or breaks. */
export function onStreamState(fn) {
  listeners.add(fn);
  fn(streamState);
}

function setStreamState(s) {
  streamState = s;
  for (const fn of listeners) fn(s);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows /v1/events (one queue's when `queue` is set) from after `after` (an event id),
 * calling `onEvent` for each transition. Returns a function that stops it.
 */
export function follow({ queue, after, onEvent }) {
  let stopped = false;
  let lastId = after || "";
  let controller = null;
  (async () => {
    let delay = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        const extra = { Accept: "text/event-stream" };
        if (lastId) extra["Last-Event-ID"] = lastId;
        const reply = await fetch(`/v1/events${query({ queue })}`, {
          headers: headers(extra),
          signal: controller.signal,
        });
        if (!reply.ok) throw new ApiError(reply.status, await reply.json().catch(() => null));
        setStreamState("on");
        delay = 500;
        const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block
              .split("\n")
              .filter((line) => line.startsWith("data:"))
              .map((line) => line.slice(5).replace(/^ /, ""))
              .join("\n");
            if (!data) continue; // a keep-alive comment
            const event = JSON.parse(data);
            lastId = event.id;
            onEvent(event);
          }
        }
      } catch (error) {
        if (stopped) return;
        console.warn("event stream interrupted; resuming", error.message);
      }
      if (stopped) return;
      setStreamState("off");
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

/**
 * A list kept live: `render` (async) runs now, then again at most every `delay` ms after
 * each event of `queue` (any queue when unset) that `wanted` accepts; one render at a time.
 * `onError` gets a failed render's message, or "" once a render succeeds. Returns
 * `{ load, stop }`: `load` renders again now, `stop` ends it.
 */
export function liveList({ render, onError, queue, wanted = () => true, delay = 1500 }) {
  let loading = false;
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      await render();
      onError("");
    } catch (e) {
      onError(`could not list: ${e.message}`);
    } finally {
      loading = false;
    }
  };
  load();
  let timer = null;
  const unfollow = follow({ queue, onEvent: (e) => {
    if (!wanted(e) || timer) return;
    timer = setTimeout(() => { timer = null; load(); }, delay);
  } });
  return { load, stop: () => { unfollow(); clearTimeout(timer); } };
}
