// Test harness: a throwaway redis-server and a real `unstuck serve` (UNSTUCK_BIN) on free
// ports, started once per test file and killed at its end (as clients/python/tests/harness.py).

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, accessSync, constants } from "node:fs";
import { createServer, connect } from "node:net";
import { createServer as createHttpServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Client } from "../dist/index.js";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const PACKAGE_ROOT = resolve(HERE, "..");

export const TOKENS = {
  admin: "adm1n-secret-1", worker: "w0rker-secret-1", read: "r3ad-secret-1", orchestrator: "0rch-secret-1",
};

// A fast watchdog for the tests; executions set their own short timings when they need them.
export const FAST_WATCHDOG = {
  UNSTUCK_WATCHDOG__LEASE_TTL: "1s",
  UNSTUCK_WATCHDOG__MAX_POLL_INTERVAL: "50ms",
  UNSTUCK_WATCHDOG__WORKER_TIMEOUT: "1s",
};

// Timings of executions the watchdog should retry quickly after a lost heartbeat.
export const FAST_TIMINGS = { heartbeat_timeout: "1s", stuck_threshold: "200ms", backoff_base: 0, max_attempts: 2 };

export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

export function unstuckBin() {
  const path = process.env.UNSTUCK_BIN;
  if (!path) {
    throw new Error("UNSTUCK_BIN is not set: these tests run against a real `unstuck serve`. Build it and point "
      + "UNSTUCK_BIN at it, e.g. UNSTUCK_BIN=$PWD/target/debug/unstuck make test-typescript");
  }
  const abs = resolve(path);
  accessSync(abs, constants.X_OK);
  return abs;
}

function redisBin() {
  const name = process.env.UNSTUCK_REDIS_SERVER ?? "redis-server";
  try {
    return execFileSync("sh", ["-c", `command -v "${name}"`], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(`${name} not found: install it (make redis) or set UNSTUCK_REDIS_SERVER`);
  }
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Polls `check()` until it returns something truthy; returns it. */
export async function waitFor(check, { timeoutMs = 15_000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

function tail(path, lines = 40) {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

function redisPong(port) {
  return new Promise((ok) => {
    const socket = connect(port, "127.0.0.1");
    socket.setTimeout(1000);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => { ok(d.toString().startsWith("+PONG")); socket.destroy(); });
    socket.once("error", () => ok(false));
    socket.once("timeout", () => { ok(false); socket.destroy(); });
  });
}

async function waitReady(what, ready, proc, log, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode}:\n${tail(log)}`);
    if (await ready().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms:\n${tail(log)}`);
}

/** redis-server + `unstuck serve`. `tokens: false` runs serve with no tokens. */
// A proxy in front of `target` (http://host:port): `intercept(req, res)` answers a request
// itself by returning true; every other request is passed on (as clients/python/tests/harness.py).
export async function startProxy(target, intercept) {
  const upstream = new URL(target);
  const server = createHttpServer((req, res) => {
    if (intercept(req, res)) {
      req.resume();
      return;
    }
    const out = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode, reply.headers);
      reply.pipe(res);
    });
    out.on("error", () => res.destroy());
    req.pipe(out);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(() => ok()); }),
  };
}

export class Stack {
  constructor({ env = {}, tokens = true } = {}) {
    this.env = { ...FAST_WATCHDOG, ...env };
    this.tokens = tokens;
    this.namespace = `ts-${randomBytes(6).toString("hex")}`;
  }

  async start() {
    const binary = unstuckBin();
    const redis = redisBin();
    this.dir = mkdtempSync(join(tmpdir(), "unstuck-ts-"));
    try {
      await this.startRedis(redis);
      await this.startServe(binary);
    } catch (e) {
      await this.stop();
      throw e;
    }
    return this;
  }

  async startRedis(redis) {
    this.redisPort = await freePort();
    const log = join(this.dir, "redis.log");
    const out = openSync(log, "w");
    this.redis = spawn(redis, ["--port", String(this.redisPort), "--bind", "127.0.0.1", "--save", "",
      "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", this.dir],
    { stdio: ["ignore", out, out], cwd: this.dir });
    await waitReady("redis-server", () => redisPong(this.redisPort), this.redis, log);
  }

  async startServe(binary, tries = 3) {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
      !k.startsWith("UNSTUCK_LEDGER__") && !k.startsWith("UNSTUCK_WATCHDOG__") && !k.startsWith("UNSTUCK_SERVER__")));
    Object.assign(env, this.env);
    env.UNSTUCK_LEDGER__REDIS_URL = `redis://127.0.0.1:${this.redisPort}/`;
    env.UNSTUCK_LEDGER__NAMESPACE = this.namespace;
    if (this.tokens) env.UNSTUCK_SERVER__TOKENS = Object.entries(TOKENS).map(([k, v]) => `${k}:${v}`).join(",");
    this.serveLog = join(this.dir, "serve.log");
    for (let attempt = 0; attempt < tries; attempt++) {
      // The port is picked here and bound by serve a moment later: retry if it was taken.
      this.port = await freePort();
      env.UNSTUCK_SERVER__LISTEN = `127.0.0.1:${this.port}`;
      this.url = `http://127.0.0.1:${this.port}`;
      const out = openSync(this.serveLog, "w");
      this.serve = spawn(binary, ["serve"], { env, cwd: this.dir, stdio: ["ignore", out, out] });
      const probe = new Client(this.url, { timeoutMs: 2000 });
      try {
        await waitReady("unstuck serve", async () => (await probe.healthz()).status === "ok", this.serve, this.serveLog);
        return;
      } catch (e) {
        if (this.serve.exitCode === null || attempt === tries - 1) throw e;
      }
    }
  }

  client(scope = "admin", options = {}) {
    return new Client(this.url, { token: this.tokens ? TOKENS[scope] : undefined, ...options });
  }

  async stop() {
    for (const proc of [this.serve, this.redis]) {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((ok) => proc.once("exit", ok));
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
    }
    this.serve = this.redis = undefined;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}
