// Batched heartbeats against a real `unstuck serve`: client.heartbeats answers each beat in
// its place (a refused one as an error value, not thrown), and a Worker holding several
// executions beats them all in one request per round, a stale one stopping only its job.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as unstuck from "../dist/index.js";
import { Stack, unique, waitFor, sleep } from "./harness.mjs";

let stack;
let client;

before(async () => { stack = await new Stack().start(); client = stack.client(); });
after(async () => { await stack?.stop(); });

/** How many requests of `route` the server has answered (its /metrics counter). */
async function requests(route) {
  let total = 0;
  for (const line of (await client.metrics()).split("\n")) {
    const m = /^unstuck_http_requests_total\{(.*)\} (\d+)$/.exec(line);
    if (m && m[1].includes(`route="${route}"`)) total += Number(m[2]);
  }
  return total;
}

async function claimOne(queue, id) {
  await client.enqueue(queue, {}, { id });
  return (await client.claim(queue, `w-${id}`))[0].token;
}

test("client.heartbeats answers each beat in its place", async () => {
  const queue = unique("bq");
  const live = await claimOne(queue, "live");
  const done = await claimOne(queue, "done");
  const big = await claimOne(queue, "big");
  await client.complete(done);
  const results = await client.heartbeats([
    { token: live, progress: "half", checkpoint: { at: 1 } },
    done,
    { token: big, checkpoint: { blob: "x".repeat(2 * 1024 * 1024) } },
  ]);
  assert.deepEqual(results[0], { cancel_requested: false });
  assert.ok(results[1] instanceof unstuck.AlreadyTerminal, String(results[1]));
  assert.equal(results[1].extra.state, "succeeded");
  assert.ok(results[2] instanceof unstuck.TooLarge, String(results[2]));
  assert.equal(results[2].extra.field, "checkpoint");
  const ex = await client.get(queue, "live");
  assert.deepEqual([ex.state, ex.progress, ex.checkpoint], ["running", "half", { at: 1 }]);
  assert.equal((await client.get(queue, "big")).state, "dispatched");
  await assert.rejects(client.heartbeats(Array(1001).fill(live)), (e) => e instanceof unstuck.InvalidArgument && e.extra.field === "heartbeats");
});

test("a worker beats what it holds in one request per round; a stale one stops alone", async () => {
  const queue = unique("bw");
  const timings = { heartbeat_timeout: "900ms", stuck_threshold: "10s" };
  for (let i = 0; i < 3; i++) await client.enqueue(queue, {}, { id: `job-${i}`, timings });
  const jobs = new Map();
  let release;
  const released = new Promise((ok) => { release = ok; });
  const workerClient = stack.client();
  const batched = workerClient.heartbeats.bind(workerClient);
  const sent = [];
  workerClient.heartbeats = async (beats, options) => { // a test hook: what each round sent
    const results = await batched(beats, options);
    sent.push({ tokens: beats.map((b) => b.token), results });
    return results;
  };
  const worker = new unstuck.Worker(workerClient, queue, async (job) => {
    jobs.set(job.id, job);
    await Promise.race([released, new Promise((_, no) => job.signal.addEventListener("abort", () => no(job.signal.reason)))]);
    return "done";
  }, { concurrency: 3, waitMs: 500, handleSignals: false });
  const done = worker.run();
  try {
    await waitFor(async () => jobs.size === 3 && (await Promise.all([0, 1, 2].map(async (i) => (await client.get(queue, `job-${i}`)).state))).every((s) => s === "running"), { what: "three running jobs" });
    await waitFor(() => sent.some((r) => r.tokens.length === 3), { what: "a round of three" });
    const single = await requests("/v1/attempts/heartbeat");
    const batches = await requests("/v1/attempts/heartbeats");
    let rounds = sent.length;
    await waitFor(() => sent.length >= rounds + 3, { what: "three more rounds" });
    assert.ok(sent.slice(rounds).every((r) => r.tokens.length === 3), JSON.stringify(sent.map((r) => r.tokens.length)));
    assert.equal(await requests("/v1/attempts/heartbeat"), single, "no beat went to the single route");
    assert.ok((await requests("/v1/attempts/heartbeats")) >= batches + 3);

    // Attempt 1 of job-1 is ended from outside (its retry waits a minute): the next round
    // answers its beat stale-attempt, and only job-1 stops.
    const stale = jobs.get("job-1");
    await client.fail(stale.token, "ended elsewhere", { retryAfterMs: 60_000 });
    await waitFor(() => stale.signal.aborted, { what: "job-1 to stop" });
    assert.ok(stale.lost);
    const answers = sent.filter((r) => r.tokens.length === 3 && r.tokens.includes(stale.token)).map((r) => r.results[r.tokens.indexOf(stale.token)]);
    assert.ok(answers.some((a) => a instanceof unstuck.StaleAttempt), String(answers));
    assert.ok(!jobs.get("job-0").signal.aborted && !jobs.get("job-2").signal.aborted);
    rounds = sent.length;
    await waitFor(() => sent.length >= rounds + 2, { what: "two more rounds" });
    assert.ok(sent.slice(rounds).every((r) => r.tokens.length === 2 && !r.tokens.includes(stale.token)));
    release();
    for (const i of [0, 2]) {
      await waitFor(async () => (await client.get(queue, `job-${i}`)).state === "succeeded", { what: `job-${i} to succeed` });
    }
    assert.equal((await client.get(queue, "job-1")).state, "queued");
  } finally {
    release();
    worker.stop();
  }
  const stats = await done;
  assert.deepEqual([stats.succeeded, stats.dropped], [2, 1], JSON.stringify(stats));
  await sleep(0);
});
