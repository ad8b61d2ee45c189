// The README's orchestrator and worker examples run as they are (the files in examples/,
// which the README shows verbatim) against a real `unstuck serve` with tokens; and the
// package `npm pack` makes.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { Stack, PACKAGE_ROOT, TOKENS, waitFor } from "./harness.mjs";

const run = promisify(execFile);

let stack;
before(async () => { stack = await new Stack().start(); });
after(async () => { await stack?.stop(); });

const example = (name) => join(PACKAGE_ROOT, "examples", name);

test("the README shows the example files verbatim", () => {
  const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
  for (const name of ["orchestrator.mjs", "worker.mjs"]) {
    assert.ok(readme.includes(readFileSync(example(name), "utf8").trim()), `${name} is in the README as it is`);
  }
});

test("the worker and orchestrator examples run as they are", async (t) => {
  const env = (scope) => ({ ...process.env, UNSTUCK_URL: stack.url, UNSTUCK_TOKEN: TOKENS[scope] });
  const worker = spawn(process.execPath, [example("worker.mjs")], { env: env("worker"), stdio: ["ignore", "pipe", "pipe"] });
  t.after(() => worker.kill("SIGKILL"));
  let out = "";
  let err = "";
  worker.stdout.on("data", (d) => { out += d; });
  worker.stderr.on("data", (d) => { err += d; });
  const exited = new Promise((ok) => worker.once("exit", (code) => ok(code)));
  const client = stack.client();
  await waitFor(async () => (await client.workers()).some((w) => w.pid === worker.pid), { what: "the example worker to register" });

  const { stdout } = await run(process.execPath, [example("orchestrator.mjs")], { env: env("orchestrator"), timeout: 60_000 });
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 3, stdout);
  for (const [i, customer] of [7, 8, 9].entries()) {
    assert.match(lines[i], new RegExp(`^report-${customer}-\\d+ succeeded \\{"attempt":1,"customer":${customer},"pages":5\\}$`));
  }
  worker.kill("SIGTERM");
  assert.equal(await exited, 0, err);
  assert.match(out, /worker stopped: \{[^}]*succeeded: 3/);
});

test("npm pack ships the ESM build with its .d.ts, the README, and no runtime dependency", async () => {
  const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PACKAGE_ROOT });
  const [pack] = JSON.parse(stdout);
  const files = pack.files.map((f) => f.path);
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8"));
  assert.equal(pkg.type, "module");
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
  for (const path of [pkg.exports["."].import, pkg.exports["."].types, "./README.md", "./package.json"]) {
    assert.ok(files.includes(path.replace(/^\.\//, "")), `${path} is in the package: ${files}`);
  }
  assert.ok(!files.some((f) => f.startsWith("src/") || f.startsWith("test/") || f.startsWith("node_modules/")), String(files));
});
