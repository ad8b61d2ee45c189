// The Client against a real `unstuck serve`: the route table against the server's
// /openapi.json, replies, typed errors with their extra members, AbortSignal, retries.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import * as unstuck from "../dist/index.js";
import { Stack, FAST_TIMINGS, unique, freePort, waitFor } from "./harness.mjs";

const { Client, ROUTES, PROBLEM_CLASSES } = unstuck;
let stack;

before(async () => { stack = await new Stack().start(); });
after(async () => { await stack?.stop(); });

test("the client's route table is exactly the server's routes (a new server route fails this)", async () => {
  const doc = await stack.client().openapi();
  const server = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of Object.keys(item)) {
      if (["get", "put", "post", "delete", "patch"].includes(method)) server.push(`${method.toUpperCase()} ${path}`);
    }
  }
  const client = Object.values(ROUTES).map(([method, path]) => `${method} ${path}`);
  const missing = server.filter((route) => !client.includes(route));
  const unknown = client.filter((route) => !server.includes(route));
  assert.deepEqual(missing, [], `routes of the server the client has no method for: ${missing.join(", ")}`);
  assert.deepEqual(unknown, [], `routes of the client the server does not have: ${unknown.join(", ")}`);
  assert.equal(new Set(client).size, client.length, "each route once");
  // Every entry is a method of Client: the table is what the client calls.
  for (const name of Object.keys(ROUTES)) assert.equal(typeof Client.prototype[name], "function", name);
});

test("every problem type the server documents has its own error class", async () => {
  const doc = await stack.client().openapi();
  const types = doc.components.schemas.Problem.properties.type.enum.map((t) => t.replace("/problems/", ""));
  assert.deepEqual(types.filter((slug) => !(slug in PROBLEM_CLASSES)), []);
  const classes = new Set(types.map((slug) => PROBLEM_CLASSES[slug]));
  assert.equal(classes.size, types.length, "one class per problem type");
  for (const slug of types) assert.equal(typeof unstuck[PROBLEM_CLASSES[slug].name], "function", `${slug} is exported`);
});

test("enqueue, get, list, find, cancel and retry return the server's JSON", async () => {
  const client = stack.client();
  const queue = unique("cq");
  const first = await client.enqueue(queue, { n: 1 }, { id: "a-1", timings: { max_attempts: 3 } });
  assert.equal(first.created, true);
  assert.equal(first.state, "queued");
  const again = await client.enqueue(queue, { n: 1 }, { id: "a-1", timings: { max_attempts: 3 } });
  assert.equal(again.created, false);
  const batch = await client.enqueueBatch(queue, [{ id: "b-1", payload: 1 }, { id: "b-2", payload: 2, delay: "1h" }]);
  assert.deepEqual(batch.map((e) => [e.id, e.created]), [["b-1", true], ["b-2", true]]);

  const ex = await client.get(queue, "a-1");
  assert.deepEqual([ex.state, ex.attempt, ex.payload, ex.timings.max_attempts], ["queued", 0, { n: 1 }, 3]);
  const page = await client.list(queue, "queued", { limit: 2 });
  assert.equal(page.items.length, 2);
  assert.ok(page.next_cursor);
  const all = [];
  for await (const item of client.listAll(queue, "queued", 1)) all.push(item.id);
  assert.deepEqual(all.sort(), ["a-1", "b-1", "b-2"]);
  const found = await client.find({ queue, state: "queued" });
  assert.equal(found.items.length, 3);

  assert.deepEqual(await client.cancel(queue, "b-1", "not needed"), { outcome: "cancelled" });
  const retried = await client.retry(queue, "b-1", { newId: "b-1.again" });
  assert.deepEqual([retried.id, retried.created], ["b-1.again", true]);
  assert.equal((await client.get(queue, "b-1.again")).retry_of, `${queue}/b-1`);
  assert.deepEqual(await client.pin(queue, "b-1"), { pinned: true, state: "cancelled" });
  assert.deepEqual(await client.unpin(queue, "b-1"), { pinned: false, state: "cancelled" });
  const events = await client.executionEvents(queue, "b-1");
  assert.deepEqual(events.events.map((e) => e.to), ["queued", "cancelled"]);
  const q = await client.getQueue(queue);
  assert.equal(q.name, queue);
  assert.ok((await client.queues()).some((x) => x.name === queue));
  assert.match(await client.metrics(), /unstuck_/);
  assert.match(await client.problem("stale-attempt"), /stale-attempt|Attempt no longer current/);
});

test("attempt calls: claim, heartbeat, complete; typed errors carry status, type, detail and camelCase members", async () => {
  const client = stack.client();
  const queue = unique("aq");
  await client.enqueue(queue, "x", { id: "e-1", timings: { max_attempts: 3, backoff_base: 0 } });
  const [claim] = await client.claim(queue, "w-1");
  assert.deepEqual([claim.id, claim.attempt, claim.payload, claim.checkpoint], ["e-1", 1, "x", null]);
  assert.deepEqual(await client.heartbeat(claim.token, { progress: "half", checkpoint: { step: 1 } }), { cancel_requested: false });
  const failed = await client.fail(claim.token, "boom");
  assert.equal(failed.outcome, "retry_scheduled");

  // The late heartbeat of attempt 1 while its retry waits: StaleAttempt with its members.
  const stale = await client.heartbeat(claim.token).catch((e) => e);
  assert.ok(stale instanceof unstuck.StaleAttempt, String(stale));
  assert.ok(stale instanceof unstuck.Conflict && stale instanceof unstuck.UnstuckError);
  assert.deepEqual([stale.status, stale.type, stale.slug], [409, "/problems/stale-attempt", "stale-attempt"]);
  assert.ok(stale.detail.length > 0);
  assert.deepEqual([stale.currentAttempt, stale.state, stale.nextAttempt, stale.attemptEnded], [1, "queued", 2, true]);

  const [second] = await client.claim(queue, "w-1", { waitMs: 5000 });
  assert.deepEqual([second.attempt, second.checkpoint], [2, { step: 1 }]);
  assert.deepEqual(await client.complete(second.token, { ok: true }), { slot_released: true });
  const terminal = await client.complete(second.token, { ok: true }).catch((e) => e);
  assert.ok(terminal instanceof unstuck.AlreadyTerminal);
  assert.equal(terminal.state, "succeeded");

  const conflict = await client.enqueue(queue, "other", { id: "e-1" }).catch((e) => e);
  assert.ok(conflict instanceof unstuck.IdempotencyConflict);
  assert.equal(conflict.status, 422);
  const missing = await client.get(queue, "nope").catch((e) => e);
  assert.ok(missing instanceof unstuck.NotFound);
  assert.deepEqual([missing.queue, missing.id, missing.status], [queue, "nope", 404]);
  const badName = await client.get(queue, "bad name!").catch((e) => e);
  assert.ok(badName instanceof unstuck.InvalidName, String(badName));
  const badArg = await client.claim(queue, "w-1", { max: 5000 }).catch((e) => e);
  assert.ok(badArg instanceof unstuck.BadRequest, String(badArg));
  assert.equal(badArg.field, "max");
  const notAwaiting = await client.resume(queue, "e-1", { ok: 1 }).catch((e) => e);
  assert.ok(notAwaiting instanceof unstuck.NotAwaiting);
  assert.equal(notAwaiting.state, "succeeded");
  const noWorker = await client.workerHeartbeat("nobody-here").catch((e) => e);
  assert.ok(noWorker instanceof unstuck.UnknownWorker);
  assert.equal(noWorker.workerId, "nobody-here");
});

test("tokens: a missing token is Unauthorized, a worker token reading is Forbidden with the scope it needs", async () => {
  const anonymous = new Client(stack.url);
  const e401 = await anonymous.queues().catch((e) => e);
  assert.ok(e401 instanceof unstuck.Unauthorized);
  assert.equal(e401.status, 401);
  const e403 = await stack.client("worker").queues().catch((e) => e);
  assert.ok(e403 instanceof unstuck.Forbidden);
  assert.equal(e403.status, 403);
  assert.ok(e403.scope, "the problem names the scope the route needs");
  assert.deepEqual(await anonymous.session(), { scope: null, open: false, can_read: false, can_steer: false, can_admin: false });
});

test("an AbortSignal ends a long-poll claim at once, rejecting with the signal's reason", async () => {
  const client = stack.client();
  const controller = new AbortController();
  const reason = new Error("caller gave up");
  const call = client.claim(unique("empty"), "w-abort", { waitMs: 30_000 }, { signal: controller.signal });
  setTimeout(() => controller.abort(reason), 100);
  await assert.rejects(call, (e) => e === reason);
  // An already aborted signal sends nothing.
  const queue = unique("noop");
  await assert.rejects(client.enqueue(queue, 1, { id: "x", signal: AbortSignal.abort(reason) }), (e) => e === reason);
  await assert.rejects(client.get(queue, "x"), unstuck.NotFound);
});

test("a long poll answers when work arrives", async () => {
  const client = stack.client();
  const queue = unique("lp");
  const waiting = client.claim(queue, "w-lp", { waitMs: 20_000 });
  await new Promise((ok) => setTimeout(ok, 100));
  await client.enqueue(queue, 7, { id: "late" });
  const claims = await waiting;
  assert.deepEqual(claims.map((c) => c.id), ["late"]);
  assert.deepEqual(await client.claim(queue, "w-lp"), []);
});

test("retries are opt-in and honour Retry-After (503 with nothing written)", async () => {
  // A stand-in server answering 503 redis-unavailable with Retry-After: 1 twice, then 200.
  const seen = [];
  const server = createServer((req, res) => {
    seen.push(Date.now());
    if (seen.length <= 2) {
      res.writeHead(503, { "content-type": "application/problem+json", "retry-after": "1" });
      res.end(JSON.stringify({ type: "/problems/redis-unavailable", title: "Redis unavailable", status: 503, detail: "nothing was written" }));
    } else {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok" }));
    }
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  try {
    const plain = new Client(`http://127.0.0.1:${port}`);
    const e = await plain.healthz().catch((err) => err);
    assert.ok(e instanceof unstuck.RedisUnavailable);
    assert.deepEqual([e.status, e.transient, e.nothingWritten, e.retryAfterMs], [503, true, true, 1000]);
    assert.equal(seen.length, 1, "no retry unless asked");

    seen.length = 0;
    const retrying = new Client(`http://127.0.0.1:${port}`, { retry: { attempts: 3, baseDelayMs: 1 } });
    assert.deepEqual(await retrying.healthz(), { status: "ok" });
    assert.equal(seen.length, 3);
    assert.ok(seen[1] - seen[0] >= 950 && seen[2] - seen[1] >= 950, `waited Retry-After between tries: ${seen}`);

    seen.length = 0;
    const e2 = await plain.healthz({ retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 10 } }).catch((err) => err);
    assert.ok(e2 instanceof unstuck.RedisUnavailable, "gives up after its attempts");
    assert.equal(seen.length, 2);
  } finally {
    server.close();
  }
});

test("no reply within timeoutMs is UnknownOutcome; retried only where repeating is safe", async () => {
  // A stand-in server that never answers its first request of each path, then answers.
  const seen = {};
  const server = createServer((req, res) => {
    seen[req.url] = (seen[req.url] ?? 0) + 1;
    if (seen[req.url] === 1) return; // no reply
    res.writeHead(201, { "content-type": "application/json" });
    res.end(JSON.stringify({ queue: "q", id: "x", created: true, state: "queued", attempt: 0, created_at: "2026-01-01T00:00:00Z", conflict: false }));
  });
  const port = await freePort();
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  try {
    const client = new Client(`http://127.0.0.1:${port}`, { timeoutMs: 200, retry: { attempts: 2, baseDelayMs: 1 } });
    // An enqueue with an id converges on a repeat: retried.
    const withId = await client.enqueue("q", 1, { id: "x" });
    assert.equal(withId.id, "x");
    assert.equal(seen["/v1/queues/q/executions"], 2);
    // Without an id a repeat could create a second execution: not retried.
    const e = await client.enqueue("other", 1).catch((err) => err);
    assert.ok(e instanceof unstuck.UnknownOutcome, String(e));
    assert.deepEqual([e.status, e.transient, e.nothingWritten], [undefined, true, false]);
    assert.equal(seen["/v1/queues/other/executions"], 1);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test("an unreachable server is ConnectionFailed (transient, nothing sent)", async () => {
  const port = await freePort();
  const e = await new Client(`http://127.0.0.1:${port}`).healthz().catch((err) => err);
  assert.ok(e instanceof unstuck.ConnectionFailed, String(e));
  assert.equal(e.transient, true);
});

test("queue settings, pause and resume, the worker registry and the watchdog's views", async () => {
  const client = stack.client();
  const queue = unique("sq");
  const set = await client.setQueue(queue, { capacity: 3, timings: FAST_TIMINGS, maxWait: "1h", onWaitExpiry: "requeue" });
  assert.deepEqual([set.own_capacity, set.max_wait_ms, set.on_wait_expiry], [3, 3_600_000, "requeue"]);
  const paused = await client.pauseQueue(queue, "maintenance");
  assert.deepEqual([paused.paused, paused.changed, paused.pause.reason], [true, true, "maintenance"]);
  assert.deepEqual([(await client.resumeQueue(queue)).paused], [false]);
  assert.ok((await client.pauseQueue(unique("never"), "x").catch((e) => e)) instanceof unstuck.UnknownQueue);

  const reg = await client.registerWorker(queue, { workerId: unique("w"), pid: 42, heartbeatInterval: "2s" });
  assert.ok((await client.registerWorker(queue, { workerId: reg.worker_id }).catch((e) => e)) instanceof unstuck.WorkerExists);
  assert.deepEqual(Object.keys(await client.workerHeartbeat(reg.worker_id, [])).includes("last_seen_at"), true);
  await client.requestWorker(reg.worker_id, "drain", "test");
  assert.equal((await client.workerHeartbeat(reg.worker_id)).request, "drain");
  const info = (await client.workers()).find((w) => w.worker_id === reg.worker_id);
  assert.deepEqual([info.pid, info.heartbeat_interval], [42, 2000]);
  assert.equal(typeof (await client.resetWorker(reg.worker_id)).previous_tier, "number");
  assert.ok(Array.isArray(await client.workerEvents({ limit: 5 })));
  await client.deregisterWorker(reg.worker_id);
  assert.ok((await client.deregisterWorker(reg.worker_id).catch((e) => e)) instanceof unstuck.UnknownWorker);

  assert.ok(["healthy", "degraded"].includes((await client.watchdogState()).health.verdict));
  assert.equal(typeof (await client.watchdogActivity(5)).truncated, "boolean");
  assert.deepEqual(await client.readyz(), { status: "ready" });
  assert.equal((await client.session()).can_admin, true);
  assert.ok(Array.isArray(await client.recentEvents({ queue, limit: 5 })));
});

test("Redis stopped under a running server: RedisUnavailable, nothing written, Retry-After", async () => {
  const own = await new Stack().start();
  try {
    const client = own.client();
    const queue = unique("down");
    await client.enqueue(queue, 1, { id: "before" });
    const exited = new Promise((ok) => own.redis.once("exit", ok));
    own.redis.kill("SIGKILL");
    await exited;
    await waitFor(async () => (await client.get(queue, "before").catch((e) => e)) instanceof unstuck.RedisUnavailable, { timeoutMs: 20_000, what: "RedisUnavailable" });
    const e = await client.enqueue(queue, 2, { id: "during" }).catch((err) => err);
    assert.ok(e instanceof unstuck.RedisUnavailable && e instanceof unstuck.Unavailable, String(e));
    assert.deepEqual([e.status, e.slug, e.transient, e.nothingWritten, e.retryAfterMs], [503, "redis-unavailable", true, true, 1000]);
    assert.match(e.detail, /nothing was written/);
  } finally {
    await own.stop();
  }
});
