// End-to-end test of the dashboard in headless Chromium, against a real `unstuck serve`
// (with a throwaway redis-server and its watchdog) holding real executions:
//   1. the overview loads with no console error;
//   2. an execution whose worker hangs appears as stuck, then retried, in the live feed,
//      without a reload;
//   3. cancel from an execution's page changes its state; an agent waiting for approval
//      shows in "Waiting on people" (reason, since, deadline) and an admin resumes it there;
//   3c. two agents hold a resource; the Resources view shows capacity and holders and an
//      admin force-releases one with a reason;
//   4. a read-only token sees the pages and no cancel, retry, resume or force-release button;
//   5. a retried execution whose first events the capped stream trimmed still shows every
//      transition (those from history marked so), and the workers table fits at 1400 px;
//   6. the health verdict drawn is the served one: healthy, then (a server without a
//      watchdog replica) degraded with its reasons, then Redis unreachable;
//   7. an admin pauses a queue from the overview (badge and banner, claims get nothing, a
//      reader sees no button) and resumes it (a waiting claim takes its work at once).
//   8. an execution past its budget shows its usage and cancel reason; a queue paused by
//      its window budget has the budget banner.
// It also takes the screenshots in docs/ (SCREENSHOT_DIR, default target/dashboard).
//
// Run by `make test` (which installs chromium and playwright-core first):
//   UNSTUCK_BIN=target/debug/unstuck node tests/browser/dashboard.mjs

import { execFileSync, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.UNSTUCK_BIN || resolve(root, "target/debug/unstuck");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = resolve(root, process.env.SCREENSHOT_DIR || "target/dashboard");
const TOKENS = { admin: "admin-e2e-secret-1", read: "read-e2e-secret-1", worker: "worker-e2e-secret-1" };
const WORKER = "e2e-host-4242-worker";
const FAST = { heartbeat_timeout: "1s", stuck_threshold: "500ms", backoff_base: 0, max_attempts: 2 };

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures += 1;
}

/** `unstuck serve --throwaway-redis` on a free port; resolves to { url, pid, stop }. */
function startServe(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("UNSTUCK_") || k.startsWith("RUST_")) delete env[k];
  Object.assign(env, {
    UNSTUCK_SERVER__LISTEN: "127.0.0.1:0",
    UNSTUCK_SERVER__TOKENS: Object.entries(TOKENS).map(([s, t]) => `${s}:${t}`).join(","),
    UNSTUCK_WATCHDOG__LEASE_TTL: "1s",
    UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL: "50ms",
    UNSTUCK_WATCHDOG__WORKER_TIMEOUT: "3s",
    // The smallest cap, so a test can trim a partition's stream with a few hundred events.
    UNSTUCK_LEDGER__EVENTS_MAX_LEN: "100",
  }, extra);
  const child = spawn(BIN, ["serve", "--throwaway-redis"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`serve did not start:\n${log}`)), 30000);
    const read = (chunk) => {
      log += chunk;
      // Only a whole address: a chunk may end in the middle of the port.
      const m = log.match(/listening on (http:\/\/[0-9.]+:[0-9]+)[^0-9]/);
      if (m) {
        clearTimeout(timer);
        ok({ url: m[1], pid: child.pid, log: () => log, stop: () => new Promise((done) => {
          if (child.exitCode !== null) return done();
          // A server whose Redis is gone may take long to stop: killed after 15 s.
          const force = setTimeout(() => child.kill("SIGKILL"), 15000);
          child.once("exit", () => { clearTimeout(force); done(); });
          child.kill("SIGTERM");
        }) });
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("exit", (code) => fail(new Error(`serve exited with ${code}:\n${log}`)));
  });
}

/** The HTTP API with a token of `scope`. */
function client(url, scope) {
  return async (method, path, body) => {
    const reply = await fetch(url + path, {
      method,
      headers: { Authorization: `Bearer ${TOKENS[scope]}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await reply.text();
    if (!reply.ok) throw new Error(`${method} ${path}: ${reply.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Real work: a registered worker that claims, beats, finishes, fails; and one that hangs. */
async function seed(api, worker) {
  const running = new Set();
  await worker("POST", "/v1/workers", { worker_id: WORKER, host: "e2e-host", pid: 4242, version: "1.4.2",
    queues: ["payments", "reports", "agents", "spend"], heartbeat_interval: "1s" });
  const beat = setInterval(() => {
    worker("POST", `/v1/workers/${WORKER}/heartbeat`, { running: [...running].map((k) => {
      const [queue, id] = k.split("/");
      return { queue, id };
    }) }).catch(() => {});
  }, 300);
  const claim = async (queue) => {
    const r = await worker("POST", `/v1/queues/${queue}/claims`, { worker_id: WORKER, wait_ms: 2000 });
    const c = r.claims[0];
    running.add(`${queue}/${c.id}`);
    return c;
  };
  const done = (queue, c) => running.delete(`${queue}/${c.id}`);
  for (let i = 1; i <= 6; i++) {
    await api("POST", "/v1/queues/payments/executions", { id: `charge-${i}`, payload: { amount: i * 100 } });
    const c = await claim("payments");
    await worker("POST", "/v1/attempts/heartbeat", { token: c.token, progress: "charged", checkpoint: { step: 2 } });
    if (i % 3 === 0) {
      await worker("POST", "/v1/attempts/fail", { token: c.token, message: "card declined", retryable: false });
    } else {
      await worker("POST", "/v1/attempts/complete", { token: c.token, result: { ok: true } });
    }
    done("payments", c);
  }
  await api("POST", "/v1/queues/payments/executions", { id: "charge-long", payload: { amount: 1 } });
  const long = await claim("payments");
  const keepLong = setInterval(() => {
    worker("POST", "/v1/attempts/heartbeat", { token: long.token, progress: `batch ${Date.now() % 1000}` }).catch(() => {});
  }, 300);
  for (let i = 1; i <= 3; i++) await api("POST", "/v1/queues/reports/executions", { id: `report-${i}`, payload: { month: i } });
  return { claim, done, stop: () => { clearInterval(beat); clearInterval(keepLong); } };
}

async function signIn(page, url, scope) {
  await page.goto(`${url}/ui/`);
  await page.fill("input[name=token]", TOKENS[scope]);
  await page.click("button[type=submit]");
  await page.waitForSelector("#who >> text=scope");
}

/** The pids of the children of `pid` (serve's throwaway redis-server). */
function childrenOf(pid) {
  return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)]).toString().split(/\s+/).filter(Boolean).map(Number);
}

/** A server with no watchdog replica: degraded, and then Redis unreachable, as served. */
async function checkDegradedHealth(browser) {
  const bare = await startServe({ UNSTUCK_SERVER__WATCHDOG: "false" });
  try {
    const api = client(bare.url, "read");
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    await signIn(page, bare.url, "read");
    await page.waitForSelector("[data-verdict=degraded]");
    const health = (await api("GET", "/v1/watchdog")).health;
    const codes = await page.locator("ul.reasons li").evaluateAll((li) => li.map((x) => x.dataset.code));
    check(JSON.stringify(codes) === JSON.stringify(health.reasons.map((r) => r.code))
      && codes.includes("no_replica") && codes.includes("partitions_unwatched"),
      `health without a replica: the overview lists the served reasons (${codes.join(", ")})`);
    await page.waitForSelector("#banner:not([hidden])");
    check((await page.textContent("#banner")).startsWith(health.summary), "health without a replica: the banner says the served summary");

    // Redis goes away: the route still answers the verdict, and the overview draws it.
    for (const pid of childrenOf(bare.pid)) process.kill(pid, "SIGKILL");
    await page.waitForSelector("li[data-code=redis_unreachable]", { timeout: 20000 });
    const reply = await fetch(`${bare.url}/v1/watchdog`, { headers: { Authorization: `Bearer ${TOKENS.read}` } });
    const problem = await reply.json();
    check(reply.status === 503 && problem.health.reasons[0].code === "redis_unreachable",
      `health with Redis gone: 503 with the verdict (${reply.status} ${problem.health && problem.health.summary})`);
    check(await page.getAttribute("[data-verdict]", "data-verdict") === "degraded", "health with Redis gone: the overview says degraded");
    await context.close();
  } finally {
    await bare.stop();
  }
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const serve = await startServe();
  const api = client(serve.url, "admin");
  const worker = client(serve.url, "worker");
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  let work = null;
  try {
    work = await seed(api, worker);
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    // 1. The overview.
    await signIn(page, serve.url, "admin");
    await page.waitForSelector("tr[data-key=payments]");
    await page.waitForSelector("[data-verdict]");
    const depth = await page.textContent("tr[data-key=reports] td:nth-child(2)");
    check(depth.trim() === "3", `overview: queue reports shows depth 3 (saw ${depth.trim()})`);
    const slots = await page.textContent("tr[data-key=payments] td:nth-child(4)");
    check(slots.trim().startsWith("1 /"), `overview: payments shows 1 slot in use (saw ${slots.trim()})`);
    check(consoleErrors.length === 0, `overview: no console error (${consoleErrors.join(" | ")})`);

    // 2. A hanging execution in the live feed, no reload.
    await page.click("a[data-nav=feed]");
    await page.waitForSelector("#live.on");
    await page.evaluate(() => { window.__sameDocument = true; });
    await api("POST", "/v1/queues/agents/executions", { id: "agent-run-7", payload: { task: "summarize" }, timings: FAST });
    const hung = await work.claim("agents");
    await worker("POST", "/v1/attempts/heartbeat", { token: hung.token, progress: "step 3 of 5", checkpoint: { step: 3 } });
    // ... and the worker never beats again (it still lists the execution as running).
    await page.waitForSelector('tr[data-execution="agents/agent-run-7"][data-to=stuck]', { timeout: 20000 });
    check(true, "feed: agent-run-7 appeared as stuck (heartbeat_lost)");
    await page.waitForSelector('tr[data-execution="agents/agent-run-7"][data-from=stuck][data-to=queued]', { timeout: 20000 });
    check(true, "feed: agent-run-7 appeared as retried (stuck → queued)");
    check(await page.evaluate(() => window.__sameDocument === true), "feed: no reload happened");
    work.done("agents", hung);
    // The retry resumes from the checkpoint and finishes.
    const again = await work.claim("agents");
    check(again.checkpoint && again.checkpoint.step === 3, "the retried attempt resumes from checkpoint step 3");
    await worker("POST", "/v1/attempts/heartbeat", { token: again.token, progress: "step 5 of 5" });
    await worker("POST", "/v1/attempts/complete", { token: again.token, result: { summary: "done" } });
    work.done("agents", again);

    // Screenshots: the overview with that activity, and the execution's timeline.
    await page.click("a[data-nav=overview]");
    await page.waitForSelector("tr[data-key=agents]");
    await page.waitForSelector(".legend >> text=heartbeat_lost");
    await page.screenshot({ path: resolve(SHOTS, "dashboard-overview.png"), fullPage: true });
    await page.goto(`${serve.url}/ui/#/e/agents/agent-run-7`);
    await page.waitForSelector("dl[data-state=succeeded]");
    await page.screenshot({ path: resolve(SHOTS, "dashboard-execution.png"), fullPage: true });
    const timeline = await page.textContent("section:has(h2:text-is('Timeline'))");
    const rows = await page.locator("section:has(h2:text-is('Timeline')) tbody tr").allTextContents();
    const stuckRow = rows.findIndex((r) => r.includes("running → stuck") && r.includes("heartbeat_lost"));
    const retryRow = rows.findIndex((r) => r.includes("stuck → queued"));
    check(stuckRow >= 0 && retryRow > stuckRow && timeline.includes("completed"),
      `execution page: the timeline shows running → stuck, stuck → queued, then completed (${rows.length} rows)`);

    // 3. Cancel from the detail page.
    await api("POST", "/v1/queues/reports/executions", { id: "report-cancel-me", payload: {} });
    await page.goto(`${serve.url}/ui/#/e/reports/report-cancel-me`);
    await page.waitForSelector("dl[data-state=queued]");
    await page.click("button[data-action=cancel]");
    await page.waitForSelector("dl[data-state=cancelled]");
    const stored = await api("GET", "/v1/queues/reports/executions/report-cancel-me");
    check(stored.state === "cancelled", `cancel: the ledger says ${stored.state}`);
    await page.waitForSelector("button[data-action=retry]");
    check(true, "cancel: the cancelled execution offers retry to the admin");
    // 3a. The trace context an enqueue carried (docs/tracing.md), on the execution page.
    const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const traced = await fetch(`${serve.url}/v1/queues/traced/executions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKENS.admin}`, "Content-Type": "application/json", traceparent: tp },
      body: JSON.stringify({ id: "report-traced", payload: {} }),
    });
    check(traced.status === 201, `traceparent: the enqueue is created (${traced.status})`);
    await page.goto(`${serve.url}/ui/#/e/traced/report-traced`);
    await page.waitForSelector(`[data-traceparent='${tp}']`);
    check(true, "execution page: shows the traceparent the enqueue carried");
    // 3b. A snoozed execution: its snoozes, and when it becomes claimable again.
    await api("POST", "/v1/queues/agents/executions", { id: "agent-429", payload: {}, timings: { max_snoozes: 5 } });
    const limited = await work.claim("agents");
    const snoozed = await worker("POST", "/v1/attempts/snooze",
      { token: limited.token, after_ms: "10m", reason: "429 from the model provider" });
    work.done("agents", limited);
    check(snoozed.outcome === "snoozed" && snoozed.snoozes === 1, `snooze: the reply says snoozed once (${JSON.stringify(snoozed)})`);
    await page.goto(`${serve.url}/ui/#/e/agents/agent-429`);
    await page.waitForSelector("dl[data-state=queued] [data-snoozes='1']");
    const snoozeFact = await page.textContent("[data-snoozes]");
    const available = await page.textContent("[data-available]");
    check(snoozeFact.includes("1 of 5") && /\(in (9|10)m/.test(available),
      `snoozed execution: shows 1 of 5 snoozes and when it becomes claimable (${snoozeFact}; ${available})`);
    const snoozeRows = await page.locator("section:has(h2:text-is('Timeline')) tbody tr").allTextContents();
    check(snoozeRows.some((r) => r.includes("snoozed") && r.includes("429 from the model provider")),
      "snoozed execution: the timeline names the snooze and its reason");
    // 3c. A looping agent: the same fingerprint three times in a row is judged looping.
    await api("POST", "/v1/queues/agents/executions", { id: "agent-loop", payload: {},
      timings: { max_repeats: 3, heartbeat_timeout: "10m", stuck_threshold: "10m" } });
    const looper = await work.claim("agents");
    for (let step = 1; step <= 3; step++) {
      await worker("POST", "/v1/attempts/heartbeat",
        { token: looper.token, progress: `step ${step}`, fingerprint: "search('flights') -> []" });
    }
    work.done("agents", looper);
    for (let i = 0; i < 200 && (await api("GET", "/v1/queues/agents/executions/agent-loop")).state !== "stuck"; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.goto(`${serve.url}/ui/#/e/agents/agent-loop`);
    await page.waitForSelector("dl[data-state=stuck] [data-repeats='3']");
    const loopFact = await page.textContent("[data-fingerprint]");
    check(loopFact.includes("search('flights') -> []") && loopFact.includes("3 in a row of max_repeats 3"),
      `looping execution: shows its fingerprint and run (${loopFact})`);
    const loopRows = await page.locator("section:has(h2:text-is('Timeline')) tbody tr").allTextContents();
    check(loopRows.some((r) => r.includes("running → stuck") && r.includes("looping")
      && r.includes("same fingerprint 3 times in a row (max_repeats 3)")),
      "looping execution: the timeline names the verdict and the count");
    // 3d. Usage and budgets: an execution past its budget shows its usage and why it is
    // asked to stop; the queue whose window budget it spent shows the budget banner.
    await api("PUT", "/v1/queues/spend", { window_budget: { tokens: 100 } });
    await api("POST", "/v1/queues/spend/executions", { id: "runaway", payload: {}, budget: { tokens: 50 } });
    const spender = await work.claim("spend");
    const spent = await worker("POST", "/v1/attempts/heartbeat",
      { token: spender.token, usage: { input_tokens: 90, output_tokens: 10, model: "m1", seq: 1 } });
    check(spent.cancel_requested && spent.cancel_reason === "budget_exceeded",
      `budget: the heartbeat reply asks to stop, budget_exceeded (${JSON.stringify(spent)})`);
    await page.goto(`${serve.url}/ui/#/e/spend/runaway`);
    await page.waitForSelector("[data-usage='100']");
    const usageFact = await page.textContent("[data-usage]");
    const budgetFact = await page.textContent("[data-budget]");
    check(usageFact.includes("90 in") && usageFact.includes("m1") && budgetFact.includes("budget_exceeded"),
      `budget: the execution shows its usage and why it stops (${usageFact}; ${budgetFact})`);
    await worker("POST", "/v1/attempts/cancel-ack", { token: spender.token });
    work.done("spend", spender);
    await page.goto(`${serve.url}/ui/#/`);
    await page.waitForSelector("p.paused-banner[data-budget-paused=spend]");
    const banner = await page.textContent("p.paused-banner[data-budget-paused=spend]");
    check(banner.includes("window budget") && banner.includes("by budget"),
      `budget: the queue paused by its window budget has its banner (${banner})`);
    await page.waitForSelector("[data-usage-queue=spend][data-window-tokens='100']");
    const queueUsage = await page.textContent("[data-usage-queue=spend]");
    check(queueUsage.includes("100 of 100 tokens"), `budget: the queue shows its window usage (${queueUsage})`);
    await api("POST", "/v1/queues/spend/resume", { reason: "raised" });
    check(consoleErrors.length === 0, `admin pages: no console error (${consoleErrors.join(" | ")})`);

    // 3b. Waiting on people: agents ask for approval; the admin resumes one from the view.
    const ask = async (id) => {
      await api("POST", "/v1/queues/approvals/executions", { id, payload: { task: "deploy" } });
      const c = await work.claim("approvals");
      const r = await worker("POST", "/v1/attempts/await",
        { token: c.token, reason: "approval of the deploy plan", wait_deadline_ms: "1h", checkpoint: { step: "planned" } });
      work.done("approvals", c);
      return r;
    };
    const asked = await ask("deploy-1");
    check(asked.outcome === "awaiting" && asked.resume_token, `await: the agent is awaiting (${asked.outcome})`);
    await ask("deploy-2");
    await page.click("a[data-nav=waiting]");
    await page.waitForSelector('tr[data-key="approvals/deploy-1"]');
    const waitingRow = await page.textContent('tr[data-key="approvals/deploy-1"]');
    check(waitingRow.includes("approval of the deploy plan") && waitingRow.includes("ago") && waitingRow.includes("(in ")
      && waitingRow.includes("fail"), `waiting view: reason, waiting since, deadline and what then (${waitingRow})`);
    await page.screenshot({ path: resolve(SHOTS, "dashboard-waiting.png"), fullPage: true });
    await page.fill('tr[data-key="approvals/deploy-1"] input[name=input]', '{"approved": true}');
    await page.click('tr[data-key="approvals/deploy-1"] button[data-action=resume]');
    await page.waitForSelector('tr[data-key="approvals/deploy-1"]', { state: "detached", timeout: 10000 });
    const resumedOne = await api("GET", "/v1/queues/approvals/executions/deploy-1");
    check(resumedOne.state === "queued" && resumedOne.resume_input && resumedOne.resume_input.approved === true,
      `resume: the ledger says ${resumedOne.state} with input ${JSON.stringify(resumedOne.resume_input)}`);
    const continued = await work.claim("approvals");
    check(continued.id === "deploy-1" && continued.resume_input && continued.resume_input.approved === true
      && continued.checkpoint && continued.checkpoint.step === "planned",
      "resume: the continuing claim gets the input and the checkpoint");
    await worker("POST", "/v1/attempts/complete", { token: continued.token, result: { deployed: true } });
    work.done("approvals", continued);
    check(consoleErrors.length === 0, `waiting view: no console error (${consoleErrors.join(" | ")})`);

    // 3c. Resources: two agents hold a browser profile; the admin force-releases one.
    const holders = [];
    for (const id of ["agent-a", "agent-b"]) {
      await api("POST", "/v1/queues/tools/executions", { id, payload: { task: "browse" } });
      const c = await work.claim("tools");
      const got = await worker("POST", "/v1/attempts/acquire", { token: c.token, resource: "browser-profile", capacity: 2 });
      check(got.resource === "browser-profile" && got.capacity === 2, `acquire: ${id} holds a unit (${JSON.stringify(got)})`);
      holders.push(c);
    }
    await page.click("a[data-nav=resources]");
    await page.waitForSelector('tr[data-key="browser-profile|tools/agent-b"]');
    const heldRow = await page.textContent('tr[data-key="browser-profile|tools/agent-a"]');
    check(heldRow.includes("2 of 2") && heldRow.includes("tools/agent-a") && heldRow.includes("ago"),
      `resources view: capacity, holder and since (${heldRow})`);
    check(await page.getAttribute('tr[data-key="browser-profile|tools/agent-a"] a', "href") === "#/e/tools/agent-a",
      "resources view: the holder links to its execution");
    await page.screenshot({ path: resolve(SHOTS, "dashboard-resources.png"), fullPage: true });
    await page.fill('tr[data-key="browser-profile|tools/agent-a"] input[name=reason]', "e2e: hung browser");
    await page.click('tr[data-key="browser-profile|tools/agent-a"] button[data-action=force-release]');
    await page.waitForSelector('tr[data-key="browser-profile|tools/agent-a"]', { state: "detached", timeout: 10000 });
    const left = await api("GET", "/v1/resources/browser-profile");
    check(left.held === 1 && left.holders[0].id === "agent-b", `force release: only agent-b holds it now (${JSON.stringify(left)})`);
    const forcedEvents = (await api("GET", "/v1/queues/tools/executions/agent-a/events")).events;
    check(forcedEvents.some((e) => e.reason === "resource_force_released" && e.detail.includes("e2e: hung browser")),
      "force release: the event carries the typed reason");
    check(consoleErrors.length === 0, `resources view: no console error (${consoleErrors.join(" | ")})`);

    // 4. A read-only token: everything visible, nothing to press.
    const readContext = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const reader = await readContext.newPage();
    await signIn(reader, serve.url, "read");
    await reader.goto(`${serve.url}/ui/#/e/reports/report-2`);
    await reader.waitForSelector("dl[data-state=queued]");
    check(await reader.locator("button[data-action]").count() === 0, "read token: no cancel button on a queued execution");
    await reader.goto(`${serve.url}/ui/#/e/payments/charge-3`);
    await reader.waitForSelector("dl[data-state=failed]");
    check(await reader.locator("button[data-action]").count() === 0, "read token: no retry button on a failed execution");
    await reader.goto(`${serve.url}/ui/#/executions?state=failed`);
    await reader.waitForSelector('tr[data-key="payments/charge-3"]');
    check(await reader.locator("tbody tr").count() === 2, "read token: the executions table lists the 2 failed charges");

    await reader.goto(`${serve.url}/ui/#/waiting`);
    await reader.waitForSelector('tr[data-key="approvals/deploy-2"]');
    check(await reader.locator("button[data-action]").count() === 0, "read token: no resume button in the waiting view");

    await reader.goto(`${serve.url}/ui/#/resources`);
    await reader.waitForSelector('tr[data-key="browser-profile|tools/agent-b"]');
    check(await reader.locator("button[data-action]").count() === 0, "read token: no force-release button in the resources view");
    for (const c of holders) {
      await worker("POST", "/v1/attempts/complete", { token: c.token, result: {} });
      work.done("tools", c);
    }
    check((await api("GET", "/v1/resources")).resources.length === 0, "complete: the attempts' units are freed");

    // 5. A retried execution whose first attempt's events were trimmed from the stream.
    await api("POST", "/v1/queues/agents/executions", { id: "agent-run-8", payload: { task: "index" }, timings: FAST });
    const first = await work.claim("agents");
    await worker("POST", "/v1/attempts/heartbeat", { token: first.token, progress: "step 1" });
    // ... the worker hangs; the watchdog judges it stuck and retries it.
    for (let i = 0; i < 200; i++) {
      const e = await api("GET", "/v1/queues/agents/executions/agent-run-8");
      if (e.state === "queued" && e.attempt === 1) break;
      await sleep(100);
    }
    work.done("agents", first);
    // Enough later events in its partition (same queue) to trim the stream past them.
    const filler = Array.from({ length: 100 }, () => ({ payload: { filler: true } }));
    for (let i = 0; i < 4; i++) await api("POST", "/v1/queues/agents/executions/batch", { items: filler });
    const second = await work.claim("agents");
    check(second.id === "agent-run-8", `the retry is claimed before the filler (claimed ${second.id})`);
    await worker("POST", "/v1/attempts/heartbeat", { token: second.token, progress: "step 2" });
    await worker("POST", "/v1/attempts/complete", { token: second.token, result: {} });
    work.done("agents", second);
    const served = await api("GET", "/v1/queues/agents/executions/agent-run-8/events");
    check(served.events.length > 0 && served.events[0].reason !== "enqueued",
      `the stream lost agent-run-8's first events (oldest kept: ${served.events[0] && served.events[0].reason})`);
    await page.goto(`${serve.url}/ui/#/e/agents/agent-run-8`);
    await page.waitForSelector("dl[data-state=succeeded]");
    const trimmedRows = await page.locator("section:has(h2:text-is('Timeline')) tbody tr").allTextContents();
    const history = served.timeline.filter((t) => t.source === "history").length;
    check(trimmedRows.length === served.timeline.length && trimmedRows.length >= 7,
      `trimmed timeline: every transition of the history is shown (${trimmedRows.length} rows of ${served.timeline.length})`);
    check(trimmedRows[0].includes("enqueued") && trimmedRows.some((r) => r.includes("running → stuck"))
      && trimmedRows.some((r) => r.includes("stuck → queued")) && trimmedRows[trimmedRows.length - 1].includes("completed"),
      "trimmed timeline: enqueued, the first attempt's stuck verdict and retry, then completed");
    check(history > 0 && await page.locator("td[data-source=history]").count() === history
      && trimmedRows.filter((r) => r.includes("from history (event trimmed)")).length === history,
      `trimmed timeline: the ${history} transitions whose events were trimmed are marked as from history`);
    check(await page.locator("[data-trimmed]").count() === 1, "trimmed timeline: a note says part came from history");

    // The workers table at 1400 px: its last column (tier) in view, nothing scrolled off.
    await page.click("a[data-nav=overview]");
    await page.waitForSelector(`section:has(h2:text-is('Workers')) a:text-is('${WORKER}')`);
    const fit = await page.evaluate(() => {
      const panel = [...document.querySelectorAll("section.panel")].find((p) => p.querySelector("h2").textContent === "Workers");
      const last = panel.querySelector("th:last-child").getBoundingClientRect();
      const box = panel.getBoundingClientRect();
      return { text: panel.querySelector("th:last-child").textContent, inside: last.right <= box.right && last.right <= window.innerWidth,
        scrolls: panel.scrollWidth > panel.clientWidth };
    });
    check(fit.text === "Tier" && fit.inside && !fit.scrolls,
      `overview at 1400 px: the workers table's last column (${fit.text}) is in view (${JSON.stringify(fit)})`);

    // 7. Pause a queue from the overview, then resume it.
    await page.click("a[data-nav=overview]");
    await page.click("button[data-action=pause][data-queue=reports]");
    await page.fill("input[name=pause-reason]", "e2e: provider outage");
    await page.click("button[data-action=pause-confirm]");
    await page.waitForSelector("span[data-paused=reports]");
    await page.waitForSelector("p.paused-banner[data-paused=reports]");
    const pausedQueue = await api("GET", "/v1/queues/reports");
    check(pausedQueue.paused && pausedQueue.pause.by === "http:admin" && pausedQueue.pause.reason === "e2e: provider outage",
      `pause: the queue is paused by http:admin with the typed reason (${JSON.stringify(pausedQueue.pause)})`);
    const nothing = await worker("POST", "/v1/queues/reports/claims", { worker_id: WORKER, wait_ms: 0 });
    check(nothing === null, "pause: a claim of the paused queue gets nothing (204)");
    await reader.goto(`${serve.url}/ui/#/`);
    await reader.waitForSelector("span[data-paused=reports]");
    check(await reader.locator("button[data-action=pause], button[data-action=resume]").count() === 0,
      "pause: a read token sees the paused badge and no pause or resume button");
    const waiting = worker("POST", "/v1/queues/reports/claims", { worker_id: WORKER, wait_ms: 20000 });
    await sleep(300);
    await page.click("button[data-action=resume][data-queue=reports]");
    const taken = await waiting;
    check(taken && taken.claims.length === 1, "resume: the claim waiting on the paused queue takes a report at once");
    await worker("POST", "/v1/attempts/complete", { token: taken.claims[0].token, result: {} });
    await page.waitForSelector("tr[data-key=reports]:not(.paused)");
    check(!(await api("GET", "/v1/queues/reports")).paused && await page.locator("p.paused-banner").count() === 0,
      "resume: the queue runs again and its banner is gone");

    // 6. The health verdict is the server's: the same words, the same reasons.
    const health = (await api("GET", "/v1/watchdog")).health;
    const drawn = await page.getAttribute("[data-verdict]", "data-verdict");
    const summary = await page.textContent("section:has(h2:text-is('Watchdog')) .summary");
    check(drawn === health.verdict && `${health.verdict}: ${summary}` === health.summary,
      `health: the overview draws the served verdict (${drawn}: ${summary} / ${health.summary})`);
    check(consoleErrors.length === 0, `admin pages after trimming: no console error (${consoleErrors.join(" | ")})`);
    await checkDegradedHealth(browser);
  } finally {
    if (work) work.stop();
    await browser.close();
    await serve.stop();
  }
  if (failures) {
    console.log(`${failures} check(s) failed; serve's log:\n${serve.log()}`);
    process.exit(1);
  }
  console.log(`dashboard e2e: all checks passed (screenshots in ${SHOTS})`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
