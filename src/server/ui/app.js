// The dashboard's shell: the token and its scope, the hold banner, and the views by the
// location's hash (#/, #/executions?..., #/waiting, #/resources, #/e/<queue>/<id>, #/feed).

import { api, loadSession, onStreamState, setToken, token } from "./api.js";
import { h, panel, put } from "./dom.js";
import { execution, executions } from "./executions.js";
import { feed } from "./feed.js";
import { overview, watchdogHealth } from "./overview.js";
import { resources } from "./resources.js";
import { waiting } from "./waiting.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const who = document.getElementById("who");
let session = null;
let stopView = () => {};

function loginForm(message) {
  const input = h("input", { type: "password", name: "token", autocomplete: "off", size: 40, placeholder: "secret" });
  const form = h("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    await start();
  } }, h("label", {}, "Token", input), h("button", { type: "submit" }, "Sign in"));
  put(main, h("div", { class: "login" }, panel("Sign in",
    h("p", {}, message), form,
    h("p", { class: "muted" }, "A read token sees everything; an admin token may also cancel, retry and resume. " +
      "The token stays in this tab (session storage)."))));
  input.focus();
}

function showWho() {
  put(who, session.open ? "open server (no tokens)" : `scope: ${session.scope}`,
    session.open ? null : [" · ", h("a", { href: "#/", onclick: (ev) => {
      ev.preventDefault();
      setToken("");
      session = null;
      stopView();
      loginForm("Signed out.");
      put(who);
    } }, "sign out")]);
}

function route() {
  stopView();
  stopView = () => {};
  if (!session) return;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === (parts[0] === "e" ? "executions" : parts[0] || "overview"));
  }
  if (parts[0] === "executions") stopView = executions(main, params);
  else if (parts[0] === "waiting") stopView = waiting(main, session);
  else if (parts[0] === "resources") stopView = resources(main, session);
  else if (parts[0] === "e" && parts.length >= 3) {
    stopView = execution(main, decodeURIComponent(parts[1]), decodeURIComponent(parts.slice(2).join("/")), session);
  } else if (parts[0] === "feed") {
    const live = feed({ limit: 500, watchdogOnly: true });
    put(main, h("h1", {}, "Live feed"), panel("Transitions as they happen, newest first", live.el));
    stopView = live.stop;
  } else stopView = overview(main, session);
}

async function pollBanner() {
  if (!session) return;
  try {
    const { health } = await watchdogHealth();
    if (health.verdict === "healthy") {
      banner.hidden = true;
      return;
    }
    const holding = health.reasons.some((r) => r.code === "partition_hold" || r.code === "namespace_hold");
    put(banner, health.summary, holding ? " — the watchdog is not failing stale executions while a hold lasts." : "");
    banner.className = holding && health.reasons.every((r) => r.code.endsWith("_hold")) ? "" : "bad";
    banner.hidden = false;
  } catch {
    // the views show their own errors
  }
}

async function start() {
  try {
    session = await loadSession();
  } catch (error) {
    session = null;
    put(main, h("p", { class: "error" }, `cannot reach the server: ${error.message}`));
    return;
  }
  if (!session.can_read) {
    const known = session.scope;
    session = null;
    loginForm(known ? `A ${known} token cannot read; use a read or admin token.`
      : token() ? "That token is not known to this server." : "This server needs a token.");
    return;
  }
  showWho();
  route();
  pollBanner();
}

onStreamState((state) => {
  const live = document.getElementById("live");
  live.className = `live ${state}`;
  put(live, state === "on" ? "live" : "not live");
});
window.addEventListener("hashchange", route);
setInterval(pollBanner, 5000);
start();
