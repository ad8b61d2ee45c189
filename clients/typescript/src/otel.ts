// The worker's `process {queue}` span, made only when the OpenTelemetry API
// (`@opentelemetry/api`) can be imported, or is handed to the Worker; without it, nothing
// (the package is not a dependency). The span is a CONSUMER span linked to the context
// stored at enqueue (the claim's `traceparent`), with the messaging attributes of the
// server's spans (docs/tracing.md), and the active span while the handler runs, so the
// handler's own spans are its children. Where spans go is the program's choice: the API's
// global tracer provider.

import type { Job } from "./job.js";

/** The part of `@opentelemetry/api` the worker uses (pass the module itself). */
export interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): {
      startActiveSpan<F extends (span: OtelSpan) => unknown>(name: string, options: Record<string, unknown>, fn: F): ReturnType<F>;
    };
  };
  SpanKind: { CONSUMER: number };
  SpanStatusCode: { ERROR: number };
}

export interface OtelSpan {
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}

export interface SpanContextLike { traceId: string; spanId: string; traceFlags: number; isRemote: boolean }

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const API_MODULE = "@opentelemetry/api"; // a variable: the compiler must not look for it

let loaded: Promise<OtelApi | undefined> | undefined;

/** The OpenTelemetry API when it can be imported, else undefined (quietly). */
export function loadOtel(): Promise<OtelApi | undefined> {
  loaded ??= import(API_MODULE).then(
    (m: Record<string, unknown>) => (isApi(m) ? m : isApi(m?.default) ? (m.default as OtelApi) : undefined),
    () => undefined,
  );
  return loaded;
}

function isApi(m: unknown): m is OtelApi {
  const api = m as Partial<OtelApi> | undefined;
  return typeof api?.trace?.getTracer === "function" && api.SpanKind !== undefined && api.SpanStatusCode !== undefined;
}

/** The span context of a W3C traceparent; undefined when absent or malformed. */
export function spanContext(traceparent: string | undefined): SpanContextLike | undefined {
  const m = traceparent ? TRACEPARENT.exec(traceparent.trim()) : null;
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5])) return undefined;
  if (/^0+$/.test(m[2]) || /^0+$/.test(m[3])) return undefined;
  return { traceId: m[2], spanId: m[3], traceFlags: parseInt(m[4], 16), isRemote: true };
}

/** Runs `fn` (the handler and what it came to) inside the `process` span, or with no span
 * when `api` is undefined; `failed(outcome)` names the error status, if any. */
export async function processSpan<T>(api: OtelApi | undefined, job: Job, workerId: string | undefined,
  fn: () => Promise<T>, failed: (outcome: T) => string | undefined): Promise<T> {
  if (!api) return fn();
  const linked = spanContext(job.traceparent);
  const attributes = {
    "messaging.system": "unstuck",
    "messaging.destination.name": job.queue,
    "messaging.message.id": job.id,
    "messaging.operation.type": "process",
    "unstuck.worker.id": workerId ?? "",
    "unstuck.attempt": job.attempt,
  };
  const options = { kind: api.SpanKind.CONSUMER, links: linked ? [{ context: linked }] : [], attributes };
  return api.trace.getTracer("unstuck").startActiveSpan(`process ${job.queue}`, options, async (span: OtelSpan) => {
    try {
      const outcome = await fn();
      const error = failed(outcome);
      if (error !== undefined) span.setStatus({ code: api.SpanStatusCode.ERROR, message: error });
      return outcome;
    } finally {
      span.end();
    }
  });
}
