// One HTTP call to `unstuck serve` over the global fetch: the bearer token, a timeout, the
// caller's AbortSignal, the mapping of failures to typed errors, and opt-in retries that
// honour Retry-After.

import { ConnectionFailed, UnknownOutcome, UnstuckError, fromResponse } from "./errors.js";

export const USER_AGENT = "unstuck-typescript/0.1.0";

/** Opt-in retries of transient failures (503 with nothing written, 504 unknown outcome,
 * no reply, the server unreachable). */
export interface RetryOptions {
  /** Tries in all, the first included (3 by default). */
  attempts?: number;
  /** First backoff when the server gave no Retry-After (200 ms), doubling per try. */
  baseDelayMs?: number;
  /** The longest wait between tries, Retry-After included (30 s). */
  maxDelayMs?: number;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call: it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Bounds connecting and waiting for the reply (the client's `timeoutMs` by default). */
  timeoutMs?: number;
  /** Retries for this call (`true`: the defaults; `false`: none); the client's by default. */
  retry?: RetryOptions | boolean;
}

export interface Request {
  method: string;
  path: string;
  query?: Record<string, string | number | boolean | undefined | null>;
  body?: unknown;
  headers?: Record<string, string>;
  /** An unknown outcome may not be repeated (a write that is not idempotent). */
  notIdempotent?: boolean;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  text: string;
}

export interface TransportOptions {
  token?: string;
  timeoutMs?: number;
  retry?: RetryOptions | boolean;
}

export class Transport {
  readonly baseUrl: string;
  token: string | undefined;
  timeoutMs: number;
  retry: RetryOptions | boolean;

  constructor(baseUrl: string, options: TransportOptions = {}) {
    const url = new URL(baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`baseUrl must be http(s)://host[:port][/prefix], not ${baseUrl}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retry = options.retry ?? false;
  }

  url(path: string, query?: Request["query"]): string {
    let url = this.baseUrl + path;
    const pairs = Object.entries(query ?? {}).filter(([, v]) => v !== undefined && v !== null);
    if (pairs.length) url += "?" + new URLSearchParams(pairs.map(([k, v]): [string, string] => [k, String(v)])).toString();
    return url;
  }

  headers(extra?: Record<string, string>, body = false): Record<string, string> {
    const headers: Record<string, string> = { accept: "application/json", "user-agent": USER_AGENT };
    if (body) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return { ...headers, ...(extra ?? {}) };
  }

  /** One request with the call's retries; a non-2xx reply throws its typed error. */
  async send(req: Request, options: CallOptions = {}): Promise<Reply> {
    const retry = resolveRetry(options.retry ?? this.retry);
    for (let tries = 1; ; tries++) {
      try {
        const reply = await this.once(req, options);
        if (reply.status < 200 || reply.status >= 300) {
          throw fromResponse(reply.status, reply.headers, reply.text);
        }
        return reply;
      } catch (e) {
        if (!(e instanceof UnstuckError) || tries >= retry.attempts || !retryable(e, req)) throw e;
        const hint = e.retryAfterMs;
        const backoff = retry.baseDelayMs * 2 ** (tries - 1) * (0.5 + Math.random() / 2);
        await sleep(Math.min(retry.maxDelayMs, hint ?? backoff), options.signal);
      }
    }
  }

  /** One request, no retries; returns whatever status came back. */
  async once(req: Request, options: CallOptions = {}): Promise<Reply> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const { signal, cleanup, timedOut } = deadline(timeoutMs, options.signal);
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const what = `${req.method} ${req.path}`;
    try {
      let res: Response;
      try {
        res = await fetch(this.url(req.path, req.query), {
          method: req.method,
          headers: this.headers(req.headers, body !== undefined),
          body,
          signal,
        });
      } catch (e) {
        throw failure(e, what, options.signal, timedOut(), timeoutMs, false);
      }
      let text: string;
      try {
        text = await res.text();
      } catch (e) {
        throw failure(e, what, options.signal, timedOut(), timeoutMs, true);
      }
      return { status: res.status, headers: headersOf(res.headers), text };
    } finally {
      cleanup();
    }
  }
}

function retryable(e: UnstuckError, req: Request): boolean {
  if (e.nothingWritten) return true;
  return e instanceof UnknownOutcome && !req.notIdempotent;
}

export function resolveRetry(retry: RetryOptions | boolean): Required<RetryOptions> {
  if (retry === false) return { attempts: 1, baseDelayMs: 200, maxDelayMs: 30_000 };
  const given = retry === true ? {} : retry;
  return {
    attempts: Math.max(1, given.attempts ?? 3),
    baseDelayMs: given.baseDelayMs ?? 200,
    maxDelayMs: given.maxDelayMs ?? 30_000,
  };
}

export function headersOf(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => { out[name.toLowerCase()] = value; });
  return out;
}

/** A signal that fires on the caller's signal or after `timeoutMs` (no AbortSignal.any on
 * Node 18). */
export function deadline(timeoutMs: number, outer?: AbortSignal): { signal: AbortSignal; timedOut: () => boolean; cleanup: () => void } {
  const controller = new AbortController();
  let fired = false;
  const onAbort = () => controller.abort(outer?.reason);
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onAbort, { once: true });
  const timer = timeoutMs > 0 && Number.isFinite(timeoutMs)
    ? setTimeout(() => { fired = true; controller.abort(); }, timeoutMs)
    : undefined;
  return {
    signal: controller.signal,
    timedOut: () => fired,
    cleanup: () => {
      if (timer !== undefined) clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}

/** What a failed fetch means: the caller's abort (its reason), nothing sent, or unknown. */
export function failure(e: unknown, what: string, outer: AbortSignal | undefined, timedOut: boolean,
  timeoutMs: number, replied: boolean): unknown {
  if (outer?.aborted) return outer.reason;
  if (timedOut) {
    return new UnknownOutcome({ detail: `${what}: no reply within ${timeoutMs} ms; retrying the same call is safe`, cause: e });
  }
  const code = causeCode(e);
  if (!replied && code && ["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"].includes(code)) {
    return new ConnectionFailed({ detail: `${what}: cannot connect (${code})`, cause: e });
  }
  return new UnknownOutcome({ detail: `${what}: connection lost (${code ?? String(e)}); retrying the same call is safe`, cause: e });
}

function causeCode(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; c && depth < 5; depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === "string") return code;
    c = (c as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Waits `ms`, or rejects with the signal's reason when it fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => { signal?.removeEventListener("abort", onAbort); resolve(); }, Math.max(0, ms));
    const onAbort = () => { clearTimeout(timer); reject(signal?.reason); };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
