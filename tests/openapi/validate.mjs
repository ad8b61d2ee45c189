// Checks unstuck's OpenAPI document with an independent OpenAPI 3.1 validator
// (@readme/openapi-parser, pinned in package-lock.json): the document must match the
// OpenAPI 3.1 schema and the rules the schema cannot state (every `{param}` of a path
// declared by each of its operations, no duplicate parameters or operation ids, ...), so
// that generic tooling such as client generators accepts every operation.
//
// The document comes from `unstuck openapi` (no Redis, no server), or from a file:
//   UNSTUCK_BIN=target/debug/unstuck node tests/openapi/validate.mjs
//   node tests/openapi/validate.mjs saved-openapi.json
// Run by `make test`, which installs the validator first (npm ci, only when missing).

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compileErrors, validate } from "@readme/openapi-parser";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.UNSTUCK_BIN || resolve(root, "target/debug/unstuck");

const file = process.argv[2];
const text = file ? readFileSync(file, "utf8") : execFileSync(BIN, ["openapi"], { encoding: "utf8" });
const doc = JSON.parse(text);
const operations = Object.values(doc.paths || {}).reduce(
  (n, item) => n + ["get", "put", "post", "delete", "patch"].filter((m) => item[m]).length,
  0,
);

const result = await validate(structuredClone(doc));
for (const warning of result.warnings || []) console.log(`warning: ${warning.message}`);
if (!result.valid) {
  console.log(compileErrors(result));
  const count = result.errors.length + (result.additionalErrors || 0);
  console.log(`openapi: ${count} error(s) in the document (OpenAPI ${doc.openapi})`);
  process.exit(1);
}
console.log(`openapi: valid OpenAPI ${doc.openapi}, ${Object.keys(doc.paths).length} paths, ${operations} operations`);
