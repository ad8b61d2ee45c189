// orchestrator.mjs: enqueues three reports, then waits for each to end.
import { Client } from "unstuck-client";

const client = new Client(process.env.UNSTUCK_URL ?? "http://127.0.0.1:8080", {
  token: process.env.UNSTUCK_TOKEN, // an orchestrator-scope secret; none without tokens
  retry: true, // retry 503s and unknown outcomes, honouring Retry-After
});

const ids = [];
for (const customer of [7, 8, 9]) {
  const enqueued = await client.enqueue("reports", { customer, pages: 5 }, {
    id: `report-${customer}-${Date.now()}`, // the id makes a repeated enqueue harmless
    timings: { heartbeat_timeout: "10s", max_attempts: 3 },
  });
  ids.push(enqueued.id);
}

const ended = ["succeeded", "failed", "cancelled", "timed_out", "dead"];
for (const id of ids) {
  let execution = await client.get("reports", id);
  while (!ended.includes(execution.state)) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    execution = await client.get("reports", id);
  }
  console.log(id, execution.state, JSON.stringify(execution.result));
}
