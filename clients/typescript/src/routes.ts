// Every route of `unstuck serve` the client calls, by the client method that calls it. The
// client builds each request from this table, and a test compares it with the server's
// GET /openapi.json, so a route added to the server without the client fails that test.

export const ROUTES = {
  healthz: ["GET", "/healthz"],
  readyz: ["GET", "/readyz"],
  metrics: ["GET", "/metrics"],
  openapi: ["GET", "/openapi.json"],
  problem: ["GET", "/problems/{slug}"],
  queues: ["GET", "/v1/queues"],
  getQueue: ["GET", "/v1/queues/{queue}"],
  setQueue: ["PUT", "/v1/queues/{queue}"],
  pauseQueue: ["POST", "/v1/queues/{queue}/pause"],
  resumeQueue: ["POST", "/v1/queues/{queue}/resume"],
  queueUsage: ["GET", "/v1/queues/{queue}/usage"],
  enqueue: ["POST", "/v1/queues/{queue}/executions"],
  enqueueBatch: ["POST", "/v1/queues/{queue}/executions/batch"],
  list: ["GET", "/v1/queues/{queue}/executions"],
  get: ["GET", "/v1/queues/{queue}/executions/{id}"],
  executionEvents: ["GET", "/v1/queues/{queue}/executions/{id}/events"],
  cancel: ["POST", "/v1/queues/{queue}/executions/{id}/cancel"],
  retry: ["POST", "/v1/queues/{queue}/executions/{id}/retry"],
  resume: ["POST", "/v1/queues/{queue}/executions/{id}/resume"],
  pin: ["PUT", "/v1/queues/{queue}/executions/{id}/pin"],
  unpin: ["DELETE", "/v1/queues/{queue}/executions/{id}/pin"],
  resumeByToken: ["POST", "/v1/resume/{resume_token}"],
  find: ["GET", "/v1/executions"],
  claim: ["POST", "/v1/queues/{queue}/claims"],
  heartbeat: ["POST", "/v1/attempts/heartbeat"],
  heartbeats: ["POST", "/v1/attempts/heartbeats"],
  complete: ["POST", "/v1/attempts/complete"],
  fail: ["POST", "/v1/attempts/fail"],
  snooze: ["POST", "/v1/attempts/snooze"],
  awaitResume: ["POST", "/v1/attempts/await"],
  cancelAck: ["POST", "/v1/attempts/cancel-ack"],
  acquire: ["POST", "/v1/attempts/acquire"],
  release: ["POST", "/v1/attempts/release"],
  resources: ["GET", "/v1/resources"],
  resource: ["GET", "/v1/resources/{resource}"],
  forceRelease: ["POST", "/v1/resources/{resource}/release"],
  registerWorker: ["POST", "/v1/workers"],
  workers: ["GET", "/v1/workers"],
  workerHeartbeat: ["POST", "/v1/workers/{worker}/heartbeat"],
  deregisterWorker: ["DELETE", "/v1/workers/{worker}"],
  resetWorker: ["POST", "/v1/workers/{worker}/reset"],
  requestWorker: ["POST", "/v1/workers/{worker}/request"],
  workerEvents: ["GET", "/v1/workers/events"],
  workerEventsLive: ["GET", "/v1/workers/events/live"],
  events: ["GET", "/v1/events"],
  recentEvents: ["GET", "/v1/events/recent"],
  watchdogState: ["GET", "/v1/watchdog"],
  watchdogActivity: ["GET", "/v1/watchdog/activity"],
  session: ["GET", "/v1/session"],
} as const satisfies Record<string, readonly [string, string]>;

export type RouteName = keyof typeof ROUTES;

/** A path segment: any name quoted, and dot-only names too so that no one folds them. */
export function segment(name: string): string {
  const quoted = encodeURIComponent(String(name));
  return /^\.+$/.test(quoted) ? quoted.replace(/\./g, "%2E") : quoted;
}

/** The route's path with its `{params}` filled in. */
export function routePath(name: RouteName, params: Record<string, string> = {}): string {
  return ROUTES[name][1].replace(/\{(\w+)\}/g, (_, key: string) => {
    const value = params[key];
    if (value === undefined || value === "") throw new TypeError(`${name}: ${key} is required`);
    return segment(value);
  });
}
