// End to end, the scenario every client runs: an orchestrator enqueues 20 executions; two
// worker processes take them; one is killed (SIGKILL) mid-job; every execution succeeds;
// the killed ones are retried once and each retry receives the checkpoint of the first
// attempt; a cancel reaches a running handler as its AbortSignal; SIGTERM drains the other.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Stack, FAST_TIMINGS, HERE, TOKENS, unique, waitFor } from "./harness.mjs";

let stack;
before(async () => { stack = await new Stack().start(); });
after(async () => { await stack?.stop(); });

/** A worker process whose JSON lines are collected in `lines`. */
function workerProcess(queue, mode) {
  const proc = spawn(process.execPath, [join(HERE, "e2e-worker.mjs"), stack.url, TOKENS.admin, queue, mode], { stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  let stderr = "";
  createInterface({ input: proc.stdout }).on("line", (line) => { if (line.startsWith("{")) lines.push(JSON.parse(line)); });
  proc.stderr.on("data", (d) => { stderr += d; });
  const exited = new Promise((ok) => proc.once("exit", (code, signal) => ok({ code, signal })));
  return { proc, lines, exited, stderr: () => stderr };
}

test("20 executions, two worker processes, one killed mid-job: all succeed, the killed ones resume from their checkpoint", async (t) => {
  const client = stack.client();
  const queue = unique("e2e");
  const ids = Array.from({ length: 20 }, (_, i) => `job-${String(i).padStart(2, "0")}`);
  await client.enqueueBatch(queue, ids.map((id, n) => ({ id, payload: { n }, timings: FAST_TIMINGS })));

  const doomed = workerProcess(queue, "hang");
  const survivor = { lines: [] };
  t.after(() => { doomed.proc.kill("SIGKILL"); survivor.proc?.kill("SIGKILL"); });
  // The doomed worker takes 3 (its concurrency) and holds them; the other takes the rest.
  await waitFor(() => doomed.lines.filter((l) => l.event === "started").length === 3, { what: "the doomed worker's 3 jobs" });
  Object.assign(survivor, workerProcess(queue, "normal"));
  await waitFor(() => doomed.lines.filter((l) => l.event === "checkpointed").length === 3, { what: "3 checkpoints held by the server" });
  const killed = doomed.lines.filter((l) => l.event === "started").map((l) => l.id).sort();
  doomed.proc.kill("SIGKILL");
  assert.deepEqual(await doomed.exited, { code: null, signal: "SIGKILL" });

  // Every execution succeeds: the watchdog retries the killed ones and the survivor runs them.
  const finals = await waitFor(async () => {
    const all = await Promise.all(ids.map((id) => client.get(queue, id)));
    return all.every((ex) => ["succeeded", "failed", "dead", "cancelled", "timed_out"].includes(ex.state)) ? all : undefined;
  }, { timeoutMs: 30_000, what: "all 20 to end" });
  assert.deepEqual(finals.map((ex) => ex.state), ids.map(() => "succeeded"));
  const doomedPid = doomed.proc.pid;
  for (const ex of finals) {
    if (killed.includes(ex.id)) {
      // Retried once; the retry got the first attempt's checkpoint.
      assert.equal(ex.attempt, 2, ex.id);
      assert.deepEqual(ex.result, { id: ex.id, attempt: 2, resumedFrom: { step: 1, pid: doomedPid } });
      const { events } = await client.executionEvents(queue, ex.id);
      const requeued = events.filter((e) => e.to === "queued" && e.from);
      assert.equal(requeued.length, 1, ex.id);
      assert.ok(["heartbeat_lost", "worker_lost"].includes(requeued[0].reason), requeued[0].reason);
    } else {
      assert.deepEqual([ex.attempt, ex.result], [1, { id: ex.id, attempt: 1, resumedFrom: null }], ex.id);
    }
  }
  const retriesSeen = survivor.lines.filter((l) => l.event === "started" && l.attempt === 2);
  assert.deepEqual(retriesSeen.map((l) => l.id).sort(), killed);
  for (const l of retriesSeen) assert.deepEqual(l.checkpoint, { step: 1, pid: doomedPid });
  assert.equal(survivor.lines.filter((l) => l.event === "started").length, 20, "17 first attempts and 3 retries");

  // A cancel reaches the survivor's running handler as its AbortSignal.
  await client.enqueue(queue, { hold: true }, { id: "cancel-me", timings: { heartbeat_timeout: "900ms" } }); // beats every 300 ms
  await waitFor(async () => (await client.get(queue, "cancel-me")).state === "running", { what: "cancel-me running" });
  assert.equal((await client.cancel(queue, "cancel-me", "no longer needed")).outcome, "requested");
  await waitFor(() => survivor.lines.some((l) => l.event === "aborted"), { what: "the handler's AbortSignal" });
  assert.deepEqual(survivor.lines.find((l) => l.event === "aborted"), { pid: survivor.proc.pid, event: "aborted", id: "cancel-me", why: "cancel" });
  await waitFor(async () => (await client.get(queue, "cancel-me")).state === "cancelled", { what: "cancelled" });

  // SIGTERM drains the survivor: it exits 0 and deregisters.
  survivor.proc.kill("SIGTERM");
  assert.deepEqual(await survivor.exited, { code: 0, signal: null }, survivor.stderr());
  const stats = survivor.lines.find((l) => l.event === "stats");
  assert.deepEqual([stats.succeeded, stats.cancelled], [20, 1]);
  assert.ok(!(await client.workers()).some((w) => w.pid === survivor.proc.pid));
});
