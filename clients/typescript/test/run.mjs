// Runs every test file with node:test, two files at a time where Node can (they mostly
// wait on timers; each starts its own redis-server and `unstuck serve`).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { HERE } from "./harness.mjs";

const files = readdirSync(HERE).filter((f) => f.endsWith(".test.mjs")).sort().map((f) => join(HERE, f));
const [major, minor] = process.versions.node.split(".").map(Number);
const concurrency = major > 20 || (major === 20 && minor >= 10) ? ["--test-concurrency=2"] : [];
const { status, signal } = spawnSync(process.execPath, ["--test", ...concurrency, ...files], { stdio: "inherit" });
process.exit(status ?? (signal ? 1 : 0));
