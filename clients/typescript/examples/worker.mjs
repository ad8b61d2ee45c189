// worker.mjs: renders reports, page by page, resuming from the last page a previous
// attempt finished. Runs until SIGTERM or Ctrl-C (or the server asks it to drain).
import { Client, NonRetryable, Worker } from "unstuck-client";

const client = new Client(process.env.UNSTUCK_URL ?? "http://127.0.0.1:8080", {
  token: process.env.UNSTUCK_TOKEN, // a worker-scope secret; none for a server without tokens
});

async function renderPage(customer, page, signal) {
  // Real work goes here; pass `signal` on (fetch, timers...) so a cancel stops it.
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 100);
    signal.addEventListener("abort", () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
}

const worker = new Worker(client, "reports", async (job) => {
  const { customer, pages } = job.payload;
  if (!Number.isInteger(pages)) throw new NonRetryable("payload.pages must be an integer");
  for (let page = job.checkpoint?.page ?? 0; page < pages; page++) {
    await renderPage(customer, page, job.signal);
    job.setProgress(`page ${page + 1}/${pages}`);
    job.setCheckpoint({ page: page + 1 }); // sent with the next heartbeat
  }
  return { customer, pages, attempt: job.attempt }; // completes the attempt
}, { concurrency: 4 });

const stats = await worker.run();
console.log("worker stopped:", stats);
