#!/usr/bin/env bash
# The heartbeat script's server-side ceiling, without our client: redis-benchmark (C,
# pipelined) sends EVALSHA of lua/_lib.lua, _pause.lua, _usage.lua + heartbeat.lua (joined as src/scripts.rs
# joins them) against EXECUTIONS running executions on a throwaway redis-server that
# listens on a unix socket only. Prints requests/s and INFO commandstats per call.
#
#   benches/heartbeat_ceiling.sh                      # the script as it is
#   SCRIPT=/tmp/heartbeat-variant.lua benches/heartbeat_ceiling.sh   # try a variant body
#   REDIS_ARGS="--hash-max-listpack-value 256" benches/heartbeat_ceiling.sh
#
# Knobs: EXECUTIONS (10000), REQUESTS (300000), PIPELINE (32), CLIENTS (50).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
executions=${EXECUTIONS:-10000}
requests=${REQUESTS:-300000}
pipeline=${PIPELINE:-32}
clients=${CLIENTS:-50}
body=${SCRIPT:-$root/lua/heartbeat.lua}

dir=$(mktemp -d)
sock="$dir/redis.sock"
# shellcheck disable=SC2086 # REDIS_ARGS is a list of arguments
redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$dir" \
  ${REDIS_ARGS:-} >"$dir/redis.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -s "$sock" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done

# Running executions shaped as claim + first heartbeat leave them. redis-benchmark's
# __rand_int__ expands to 12 digits, so the ids are zero-padded to match.
tag='{bench:0}'
now=$(($(date +%s) * 1000))
awk -v n="$executions" -v now="$now" -v tag="$tag" '
  function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
  function cmd(argc, args,   i) { printf "*%d\r\n", argc; for (i = 1; i <= argc; i++) bulk(args[i]) }
  BEGIN {
    hist = now "|queued|enqueued|0\n" now "|dispatched|claimed|1\n" now "|running|started|1"
    split("q bench st running att 1 tok n1 wk w0 dsp " now " hb " now " pr - prc " now \
          " ss - pl {\"n\":1} cr " now " sg 30000 ht 30000 npt 0 dl 0 dla 0 stt 30000" \
          " ma 2 bb 1000 bm 300000 cg 30000 sta " now, f, " ")
    for (i = 0; i < n; i++) {
      id = sprintf("%012d", i)
      a[1] = "HSET"; a[2] = tag ":x:bench/" id; c = 2
      for (j = 1; j in f; j++) { v = f[j]; if (v == "-") v = ""; a[++c] = v }
      a[++c] = "id"; a[++c] = id; a[++c] = "hist"; a[++c] = hist
      cmd(c, a)
      b[1] = "ZADD"; b[2] = tag ":timer:heartbeat"; b[3] = now + 30000; b[4] = "bench/" id
      cmd(4, b)
    }
  }' | cli --pipe >/dev/null

sha=$(cat "$root/lua/_lib.lua" <(echo) "$root/lua/_pause.lua" <(echo) "$root/lua/_usage.lua" <(echo) "$body" | cli -x script load)
sample="$tag:x:bench/000000000000"
echo "redis-server $(cli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p'), nproc $(nproc)," \
  "$executions running executions, hash encoding $(cli object encoding "$sample")," \
  "$(cli memory usage "$sample") B each"
cli config resetstat >/dev/null
redis-benchmark -s "$sock" -n "$requests" -r "$executions" -P "$pipeline" -c "$clients" -q \
  EVALSHA "$sha" 6 "$tag:x:bench/__rand_int__" "$tag:events" "$tag:timer:start" \
  "$tag:timer:heartbeat" "$tag:timer:progress" "$tag:timer:stuck" \
  "bench/__rand_int__" 1 n1 0 "" 0 "" 10000 32 2>/dev/null |
  tr '\r' '\n' | grep 'requests per second' | tail -1 | sed 's/^.*: //'
cli info commandstats | sed -n 's/^cmdstat_\([a-z]*\):calls=\([0-9]*\),usec=[0-9]*,usec_per_call=\([0-9.]*\).*/  \1: \3 µs per call (\2 calls)/p'
