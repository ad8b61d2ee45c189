// The SSE event stream against a real `unstuck serve`: an execution's transitions, and
// resuming with Last-Event-ID after the connection drops, losing and repeating nothing.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { LineSplitter, SseParser } from "../dist/index.js";
import { Stack, unique } from "./harness.mjs";

let stack;
before(async () => { stack = await new Stack().start(); });
after(async () => { await stack?.stop(); });

/** A stream that starts right after a marker event of `queue`, so every event the test
 * causes afterwards is in it however late the connection is made. */
async function openStream(client, queue, options = {}) {
  const marker = unique("marker");
  await client.enqueue(queue, null, { id: marker });
  await client.cancel(queue, marker);
  const { events } = await client.executionEvents(queue, marker);
  const stream = client.events({ queue, lastEventId: events.at(-1).id, ...options });
  const guard = setTimeout(() => stream.close(), 30_000); // never hang the suite
  return { stream, done: () => { clearTimeout(guard); stream.close(); } };
}

async function take(iterator, n) {
  const got = [];
  while (got.length < n) {
    const { value, done } = await iterator.next();
    if (done) throw new Error(`stream ended after ${got.length} of ${n} events`);
    got.push(value);
  }
  return got;
}

test("the stream shows an execution's transitions", async () => {
  const client = stack.client();
  const queue = unique("eq");
  const { stream, done } = await openStream(client, queue);
  try {
    const it = stream[Symbol.asyncIterator]();
    await client.enqueue(queue, { x: 1 }, { id: "a-1" });
    const [claim] = await client.claim(queue, "w-ev");
    await client.heartbeat(claim.token, { progress: "working" });
    await client.complete(claim.token, "done");
    const got = await take(it, 4);
    assert.deepEqual(got.map((e) => [e.execution_id, e.from ?? null, e.to]), [
      ["a-1", null, "queued"], ["a-1", "queued", "dispatched"], ["a-1", "dispatched", "running"], ["a-1", "running", "succeeded"],
    ]);
    assert.equal(stream.lastEventId, got[3].id);
  } finally {
    done();
  }
});

test("a dropped connection resumes with Last-Event-ID: nothing lost, nothing twice", async () => {
  const client = stack.client();
  const queue = unique("rq");
  // Reconnecting 300 ms later: the events below are written while it is down, and only
  // Last-Event-ID brings them (a stream opened without one starts from now).
  const { stream, done } = await openStream(client, queue, { reconnectDelayMs: 300 });
  try {
    const it = stream[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) await client.enqueue(queue, i, { id: `before-${i}` });
    const first = await take(it, 3);
    assert.deepEqual(first.map((e) => e.execution_id), ["before-0", "before-1", "before-2"]);
    stream.disconnect();
    // Written while the stream is down or reconnecting.
    for (let i = 0; i < 3; i++) await client.enqueue(queue, i, { id: `after-${i}` });
    const second = await take(it, 3);
    assert.deepEqual(second.map((e) => e.execution_id), ["after-0", "after-1", "after-2"]);
    assert.equal(stream.reconnects, 1);
    const ids = [...first, ...second].map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length);
  } finally {
    done();
  }
});

test("close() ends a for-await loop waiting for the next event", async () => {
  const client = stack.client();
  const { stream, done } = await openStream(client, unique("cq"));
  setTimeout(() => stream.close(), 100);
  let count = 0;
  for await (const _ of stream) count++;
  done();
  assert.equal(count, 0);
});

test("the worker events stream gives the registry's events as they happen", async () => {
  const client = stack.client();
  const stream = client.workerEventsLive();
  const guard = setTimeout(() => stream.close(), 30_000);
  try {
    const it = stream[Symbol.asyncIterator]();
    const next = it.next();
    const { worker_id } = await client.registerWorker([], { workerId: unique("wl") });
    // The stream is live from when it connected: reset until its event comes through.
    let event;
    const timer = setInterval(() => client.resetWorker(worker_id, "test").catch(() => undefined), 200);
    try {
      for (let r = await next; !r.done; r = await it.next()) {
        if (r.value.worker_id === worker_id) { event = r.value; break; }
      }
    } finally {
      clearInterval(timer);
    }
    assert.equal(event?.worker_id, worker_id);
  } finally {
    clearTimeout(guard);
    stream.close();
  }
});

test("the SSE parser: multi-line data, persisting ids, comments, retry, CR/LF endings", () => {
  const lines = new LineSplitter();
  const got = [];
  const parser = new SseParser();
  const chunks = [": keep-alive\r\nid: 1-5-0\r\ndata: {\"a\"", ":\r\ndata: 1}\r\n\r", "\nretry: 300\ndata: 2\n\n", "event: x\rdata: 3\r\r", "\n"];
  for (const chunk of chunks) {
    for (const line of lines.push(chunk)) {
      const m = parser.feed(line);
      if (m) got.push(m);
    }
  }
  assert.deepEqual(got, [
    { id: "1-5-0", event: "message", data: "{\"a\":\n1}" },
    { id: "1-5-0", event: "message", data: "2" },
    { id: "1-5-0", event: "x", data: "3" },
  ]);
  assert.equal(parser.retryMs, 300);
});
