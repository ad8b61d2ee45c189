#!/usr/bin/env bash
# The whole test suite, as `make test` runs it, in three lanes at once once every test
# target is built:
#   lane 1: the fault suite (tests/faults), which keeps about one core busy for a minute
#           or more generating load;
#   lane 2: the other Rust test binaries, the benches' and examples' test runs, the
#           doctests, the dashboard in Chromium and the OpenAPI document's validator;
#   lane 3: the Python, Go and TypeScript clients' tests, each against the `unstuck` binary
#           the build made (they need no cargo, so they do not wait for lane 2's lock).
# Lanes 2 and 3 mostly wait on timers (heartbeat timeouts, watchdog rounds).
# Run one after the other they took the sum; side by side, about the longest.
# Each step prints a line when it starts and when it ends with its time; the output of
# lanes 1 and 3 follows when they end. The exit code is non-zero if any step failed.
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
lane=2
step() {
  local name=$1; shift
  stamp "lane $lane: $name"
  if "$@"; then stamp "lane $lane: $name passed"; else failed+=("$name"); stamp "lane $lane: $name FAILED"; fi
}

# Lane 3, in the background: the clients. Its failures come back through a file.
clients_log=target/tmp/clients-lane.log
clients_failed=target/tmp/clients-lane.failed
rm -f "$clients_failed"
( lane=3
  step "Python client" python3 -m unittest discover -s clients/python/tests
  step "Go client" bash -c 'cd clients/go && go test -count=1 ./...'
  step "TypeScript client" npm --prefix clients/typescript test
  if [ ${#failed[@]} -gt 0 ]; then printf '%s\n' "${failed[@]}" >"$clients_failed"; fi
) >"$clients_log" 2>&1 &
clients_pid=$!

other_tests=()
for main in tests/*/main.rs; do
  area=$(basename "$(dirname "$main")")
  [ "$area" = faults ] || other_tests+=(--test "$area")
done
step "cargo tests (all targets but the fault suite)" \
  cargo test --no-fail-fast --lib --bins --examples --benches "${other_tests[@]}"
step "doctests" cargo test --doc
step "dashboard in Chromium" node tests/browser/dashboard.mjs
step "OpenAPI document" node tests/openapi/validate.mjs

wait "$clients_pid"
echo "== lane 3 (the clients):"
cat "$clients_log"
if [ -f "$clients_failed" ]; then mapfile -t -O ${#failed[@]} failed <"$clients_failed"; fi
wait "$faults_pid" || failed+=("fault suite")
echo "== the fault suite's output:"
cat "$log"
stamp "all done"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "every step passed"
