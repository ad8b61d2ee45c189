// A worker process for e2e.test.mjs. Prints one JSON line per thing that happens.
//   hang:   first attempts set a checkpoint, say so once the server holds it, then never
//           end (the test kills this process with SIGKILL);
//   normal: every job completes after a short while with the checkpoint it was given;
//           a payload {hold: true} waits for its AbortSignal (the test cancels it).
// usage: node e2e-worker.mjs URL TOKEN QUEUE hang|normal

import { Client, Worker } from "../dist/index.js";

const [url, token, queue, mode] = process.argv.slice(2);
const client = new Client(url, { token });
const say = (what) => process.stdout.write(JSON.stringify({ pid: process.pid, ...what }) + "\n");
const sleep = (ms, signal) => new Promise((ok, fail) => {
  const timer = setTimeout(ok, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); fail(signal.reason); }, { once: true });
});

async function handler(job) {
  say({ event: "started", id: job.id, attempt: job.attempt, checkpoint: job.checkpoint });
  if (job.payload?.hold) {
    try {
      await sleep(60_000, job.signal);
    } catch (e) {
      say({ event: "aborted", id: job.id, why: job.signal.reason?.why });
      throw e;
    }
    return "never cancelled";
  }
  if (mode === "hang") {
    const checkpoint = { step: 1, pid: process.pid };
    job.setCheckpoint(checkpoint);
    for (;;) { // until the server holds it (the next heartbeat carries it)
      const ex = await client.get(queue, job.id);
      if (ex.checkpoint?.step === 1 && ex.checkpoint?.pid === process.pid) break;
      await sleep(50);
    }
    say({ event: "checkpointed", id: job.id, attempt: job.attempt });
    await sleep(3_600_000); // mid-job when the test kills the process
  }
  await sleep(150, job.signal);
  return { id: job.id, attempt: job.attempt, resumedFrom: job.checkpoint };
}

const worker = new Worker(client, queue, handler, { concurrency: 3, heartbeatIntervalMs: 500 });
const stats = await worker.run();
say({ event: "stats", ...stats });
