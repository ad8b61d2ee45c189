// Server-Sent Events followed across dropped connections: an AsyncIterable that resumes
// with Last-Event-ID so that no event is lost, and drops the repeats a resume may bring.

import { UnstuckError, fromResponse } from "./errors.js";
import { Transport, failure, headersOf, sleep } from "./transport.js";

export interface EventStreamOptions {
  /** Resume after this event id (the `id` of the last event handled). */
  lastEventId?: string;
  /** Wait before reconnecting (the server's `retry:`, else 250 ms), doubling on failures. */
  reconnectDelayMs?: number;
  /** The longest wait before a reconnect (10 s). */
  maxReconnectDelayMs?: number;
  /** A connection silent this long is dropped and reopened (45 s; keep-alives come every 15 s). */
  idleTimeoutMs?: number;
  /** Ends the iteration when it fires. */
  signal?: AbortSignal;
}

/** One SSE message. */
export interface SseMessage { id: string | undefined; event: string; data: string }

/** The SSE wire format, one line at a time (the WHATWG rules: `data` lines join with
 * newlines, `id` persists across messages, comments start with `:`). */
export class SseParser {
  lastEventId: string | undefined;
  retryMs: number | undefined;
  private data: string[] = [];
  private event = "";

  constructor(lastEventId?: string) {
    this.lastEventId = lastEventId;
  }

  /** Takes one line (without its end); returns a message when the line completes one. */
  feed(line: string): SseMessage | undefined {
    if (line === "") {
      const data = this.data;
      const event = this.event || "message";
      this.data = [];
      this.event = "";
      return data.length ? { id: this.lastEventId, event, data: data.join("\n") } : undefined;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }
}

/** Splits decoded text into lines (CRLF, LF or lone CR), keeping the unfinished rest. */
export class LineSplitter {
  private rest = "";

  push(text: string): string[] {
    this.rest += text;
    const lines: string[] = [];
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    for (let m = eol.exec(this.rest); m; m = eol.exec(this.rest)) {
      if (m[0] === "\r" && m.index + 1 === this.rest.length) break; // maybe half a CRLF
      lines.push(this.rest.slice(start, m.index));
      start = m.index + m[0].length;
    }
    this.rest = this.rest.slice(start);
    return lines;
  }
}

/** `<partition>-<ms>-<seq>` as [partition, ms, seq]; undefined when it is not one. */
function position(id: string): [string, number, number] | undefined {
  const m = /^(\d+)-(\d+)-(\d+)$/.exec(id);
  return m ? [m[1], Number(m[2]), Number(m[3])] : undefined;
}

/**
 * Events from a Server-Sent Events route, as an AsyncIterable. A dropped connection (EOF,
 * reset, nothing heard for `idleTimeoutMs`, a 5xx) is reopened with Last-Event-ID; the
 * server resumes after that event in its partition and from the same millisecond in the
 * others, so events may come twice: they are dropped here by keeping, per partition, the
 * newest stream id handed out. Errors that retrying cannot fix (401, 403, 400) are thrown.
 * `close()` ends the iteration; `disconnect()` drops the current connection only.
 */
export class EventStream<T = unknown> implements AsyncIterable<T> {
  /** The id of the last event handed out: give it to a new stream to resume later. */
  lastEventId: string | undefined;
  /** How many times the stream reconnected after a connection ended. */
  reconnects = 0;
  private readonly transport: Transport;
  private readonly path: string;
  private readonly query: Record<string, string | undefined>;
  private readonly options: EventStreamOptions;
  private readonly newest = new Map<string, [number, number]>();
  private readonly recent = new Set<string>();
  private serverRetryMs: number | undefined;
  private closed = false;
  private connection: AbortController | undefined;
  private readonly stopped = new AbortController();
  private idle: ReturnType<typeof setTimeout> | undefined;

  constructor(transport: Transport, path: string, query: Record<string, string | undefined>, options: EventStreamOptions = {}) {
    this.transport = transport;
    this.path = path;
    this.query = query;
    this.options = options;
    this.lastEventId = options.lastEventId;
    if (this.lastEventId) this.isNew(this.lastEventId);
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    if (options.signal?.aborted) this.close();
  }

  /** Ends the iteration: a pending `next()` resolves done. */
  close(): void {
    this.closed = true;
    this.stopped.abort();
    this.connection?.abort();
    clearTimeout(this.idle); // the iterator may be suspended at a yield, never to resume
  }

  /** Drops the current connection; the iteration goes on after a reconnect. */
  disconnect(): void {
    this.connection?.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.follow();
  }

  private delay(failures: number): number {
    const base = this.options.reconnectDelayMs ?? this.serverRetryMs ?? 250;
    return Math.min(this.options.maxReconnectDelayMs ?? 10_000, base * 2 ** Math.max(0, failures - 1));
  }

  private isNew(id: string): boolean {
    const pos = position(id);
    if (!pos) {
      if (this.recent.has(id)) return false;
      this.recent.add(id);
      if (this.recent.size > 10_000) this.recent.delete(this.recent.values().next().value as string);
      return true;
    }
    const [partition, ms, seq] = pos;
    const newest = this.newest.get(partition);
    if (newest && (ms < newest[0] || (ms === newest[0] && seq <= newest[1]))) return false;
    this.newest.set(partition, [ms, seq]);
    return true;
  }

  private async pause(ms: number): Promise<boolean> {
    try {
      await sleep(ms, this.stopped.signal);
      return true;
    } catch {
      return false;
    }
  }

  private async open(controller: AbortController): Promise<Response> {
    const headers: Record<string, string> = { accept: "text/event-stream", "cache-control": "no-cache" };
    if (this.lastEventId) headers["last-event-id"] = this.lastEventId;
    let res: Response;
    try {
      res = await fetch(this.transport.url(this.path, this.query), {
        headers: this.transport.headers(headers),
        signal: controller.signal,
      });
    } catch (e) {
      const err = failure(e, `GET ${this.path}`, undefined, false, 0, false);
      throw err instanceof UnstuckError ? err : new UnstuckError({ detail: String(err), cause: e });
    }
    if (res.status !== 200 || !res.body) {
      throw fromResponse(res.status, headersOf(res.headers), await res.text().catch(() => ""));
    }
    return res;
  }

  private async *follow(): AsyncGenerator<T> {
    let failures = 0;
    try {
      while (!this.closed) {
        const controller = new AbortController();
        this.connection = controller;
        let res: Response;
        try {
          res = await this.open(controller);
        } catch (e) {
          if (this.closed) return;
          if (!(e instanceof UnstuckError) || !e.transient) throw e;
          failures += 1;
          if (!(await this.pause(e.retryAfterMs ?? this.delay(failures)))) return;
          continue;
        }
        failures = 0;
        yield* this.messages(res, controller);
        controller.abort();
        if (this.closed) return;
        this.reconnects += 1;
        if (!(await this.pause(this.delay(1)))) return;
      }
    } finally {
      this.connection?.abort();
    }
  }

  private async *messages(res: Response, controller: AbortController): AsyncGenerator<T> {
    const parser = new SseParser(this.lastEventId);
    const lines = new LineSplitter();
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    const idleMs = this.options.idleTimeoutMs ?? 45_000;
    const rearm = () => {
      clearTimeout(this.idle);
      if (!this.closed) this.idle = setTimeout(() => controller.abort(), idleMs);
    };
    rearm();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        rearm();
        for (const line of lines.push(decoder.decode(value, { stream: true }))) {
          const message = parser.feed(line);
          if (parser.retryMs !== undefined) this.serverRetryMs = parser.retryMs;
          if (!message) continue;
          let event: unknown;
          try {
            event = JSON.parse(message.data);
          } catch {
            continue; // not JSON: skipped
          }
          const id = message.id;
          if (id && event && typeof event === "object" && !("id" in event)) (event as Record<string, unknown>).id = id;
          if (id && !this.isNew(id)) continue;
          if (id) this.lastEventId = id;
          yield event as T;
        }
      }
    } catch {
      // The connection dropped (or was dropped): the caller reconnects unless closed.
    } finally {
      clearTimeout(this.idle);
      reader.cancel().catch(() => undefined);
    }
  }
}
