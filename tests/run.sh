#!/usr/bin/env bash
# The whole test suite, as `make test` runs it, in two lanes at once:
#   lane 1: the fault suite (tests/faults), which keeps about one core busy for a minute
#           or more generating load;
#   lane 2: everything else, which mostly waits on timers: the other test binaries, the
#           benches' and examples' test runs, the doctests, the Python and TypeScript
#           clients' tests, the dashboard in Chromium and the OpenAPI document's validator.
# Run one after the other they took the sum of the two; side by side, about the longer.
# Each step prints a line when it starts and when it ends with its time; the fault lane's
# output follows when it ends. The exit code is non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

export UNSTUCK_BIN="$PWD/target/debug/unstuck"
mkdir -p target/tmp
log=target/tmp/faults-lane.log
start=$(date +%s)

stamp() { echo "== [$(( $(date +%s) - start ))s] $*"; }

echo "== building every test target (cargo test --all-targets --no-run)"
cargo test --all-targets --no-run --message-format=json-render-diagnostics \
  >target/tmp/test-targets.json || exit 1
faults_bin=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and t.get("name") == "faults" \
            and "test" in t.get("kind", []) and m.get("executable"):
        print(m["executable"])
' target/tmp/test-targets.json)
if [ -z "$faults_bin" ]; then echo "the fault suite's test binary was not built" >&2; exit 1; fi

# Lane 1, in the background: the fault suite's binary itself (a second `cargo test` would
# wait for the first one's lock on target/ until it ended).
( stamp "lane 1: the fault suite"
  "$faults_bin" >"$log" 2>&1; rc=$?
  stamp "lane 1: the fault suite ended (exit $rc)"; exit $rc ) &
faults_pid=$!

failed=()
step() {
  local name=$1; shift
  stamp "lane 2: $name"
  if "$@"; then stamp "lane 2: $name passed"; else failed+=("$name"); stamp "lane 2: $name FAILED"; fi
}

other_tests=()
for main in tests/*/main.rs; do
  area=$(basename "$(dirname "$main")")
  [ "$area" = faults ] || other_tests+=(--test "$area")
done
step "cargo tests (all targets but the fault suite)" \
  cargo test --no-fail-fast --lib --bins --examples --benches "${other_tests[@]}"
step "doctests" cargo test --doc
step "Python client" python3 -m unittest discover -s clients/python/tests
step "TypeScript client" npm --prefix clients/typescript test
step "dashboard in Chromium" node tests/browser/dashboard.mjs
step "OpenAPI document" node tests/openapi/validate.mjs

wait "$faults_pid" || failed+=("fault suite")
echo "== the fault suite's output:"
cat "$log"
stamp "all done"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "every step passed"
