// unstuck's TypeScript client: the HTTP API of `unstuck serve`, its event stream, and a
// worker runner. No runtime dependencies: Node >= 18 and its global fetch.

export { Client } from "./client.js";
export type { AcquireOptions, ClientOptions, EnqueueOptions, HeartbeatBody, FindOptions, OpenApiDocument, PageOptions, RegisterOptions } from "./client.js";
export * from "./errors.js";
export { EventStream, LineSplitter, SseParser } from "./sse.js";
export type { EventStreamOptions, SseMessage } from "./sse.js";
export { ROUTES, routePath, segment } from "./routes.js";
export type { RouteName } from "./routes.js";
export type { CallOptions, RetryOptions } from "./transport.js";
export { MAX_FINGERPRINT_BYTES, AwaitResume, Cancelled, Job, NonRetryable, NonRetryable as Fatal, Retryable, Snooze } from "./job.js";
export { MAX_WAIT_MS, Worker, freshWorkerId } from "./worker.js";
export type { UsageAmounts } from "./job.js";
export type { Handler, Logger, Stats, WorkerOptions } from "./worker.js";
export type * from "./types.js";
export { spanContext } from "./otel.js";
export type { OtelApi, OtelSpan, SpanContextLike } from "./otel.js";
