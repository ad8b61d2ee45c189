#!/usr/bin/env bash
# What a usage delta adds to a heartbeat's Redis time: the heartbeat script (joined as
# src/scripts.rs joins it) run by a pipelined redis-cli --pipe against EXECUTIONS running
# executions on a throwaway redis-server (unix socket), alternately plain beats and beats
# each carrying a usage delta (its own increasing seq, a model named: every delta is
# applied, none is a replay), ROUNDS times. Prints INFO commandstats µs per EVALSHA for
# each batch and the server's CPU time per beat, the medians and their ratios. redis-benchmark cannot number the deltas, hence
# the generated command stream.
#
#   benches/heartbeat_usage_ceiling.sh
#
# Knobs: EXECUTIONS (10000), BEATS per batch (200000), ROUNDS (3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
executions=${EXECUTIONS:-10000}
beats=${BEATS:-200000}
rounds=${ROUNDS:-3}

dir=$(mktemp -d)
sock="$dir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$dir" \
  >"$dir/redis.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -s "$sock" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done

tag='{bench:0}'
now=$(($(date +%s) * 1000))
awk -v n="$executions" -v now="$now" -v tag="$tag" '
  function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
  function cmd(argc, args,   i) { printf "*%d\r\n", argc; for (i = 1; i <= argc; i++) bulk(args[i]) }
  BEGIN {
    split("q bench st running att 1 tok n1 wk w0 dsp " now " hb " now " pr - prc " now \
          " ss - pl {\"n\":1} cr " now " sg 30000 ht 30000 npt 0 dl 0 dla 0 stt 30000" \
          " ma 2 bb 1000 bm 300000 cg 30000 sta " now, f, " ")
    for (i = 0; i < n; i++) {
      id = sprintf("%06d", i)
      a[1] = "HSET"; a[2] = tag ":x:bench/" id; c = 2
      for (j = 1; j in f; j++) { v = f[j]; if (v == "-") v = ""; a[++c] = v }
      a[++c] = "id"; a[++c] = id
      cmd(c, a)
      b[1] = "ZADD"; b[2] = tag ":timer:heartbeat"; b[3] = now + 30000; b[4] = "bench/" id
      cmd(4, b)
    }
  }' | cli --pipe >/dev/null

sha=$(cat "$root/lua/_lib.lua" <(echo) "$root/lua/_fingerprint.lua" <(echo) "$root/lua/_pause.lua" <(echo) "$root/lua/_usage.lua" \
  <(echo) "$root/lua/heartbeat.lua" | cli -x script load)

# The command stream of one batch of beats, written before the clock starts: plain (usage
# 0) or each beat with a delta numbered from `first`.
stream() {
  awk -v n="$beats" -v e="$executions" -v tag="$tag" -v sha="$sha" -v usage="$1" -v first="$2" '
    function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
    BEGIN {
      for (i = 0; i < n; i++) {
        id = sprintf("%06d", i % e)
        printf "*%d\r\n", usage ? 28 : 18
        bulk("EVALSHA"); bulk(sha); bulk(usage ? 9 : 6)
        bulk(tag ":x:bench/" id); bulk(tag ":events"); bulk(tag ":timer:start")
        bulk(tag ":timer:heartbeat"); bulk(tag ":timer:progress"); bulk(tag ":timer:stuck")
        if (usage) { bulk(tag ":q:bench:conf"); bulk(tag ":q:bench:usage"); bulk(tag ":timer:cancel") }
        bulk("bench/" id); bulk("1"); bulk("n1"); bulk("0"); bulk(""); bulk("0"); bulk("")
        bulk("10000"); bulk("32")
        if (usage) {
          bulk(""); bulk(first + int(i / e)); bulk("1200"); bulk("300"); bulk("0")
          bulk("4500"); bulk("bench-model")
        }
      }
    }' >"$dir/stream"
}

# CPU time (ns) the server's main thread has run so far: unlike the commandstats µs
# (wall clock), not inflated when a loaded machine takes the core away mid-script.
cpu_ns() { cut -d' ' -f1 "/proc/$server/schedstat"; }

# Runs the stream; prints "<commandstats µs per EVALSHA> <server CPU µs per beat>".
batch() {
  cli config resetstat >/dev/null
  local stats c0 c1
  c0=$(cpu_ns)
  cli --pipe <"$dir/stream" >/dev/null
  c1=$(cpu_ns)
  stats=$(cli info commandstats | grep '^cmdstat_evalsha:')
  case $stats in
    *failed_calls=0*) ;;
    *) echo "beats failed: $stats" >&2; exit 1 ;;
  esac
  echo "$(echo "$stats" | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')" \
    "$(awk -v a="$c0" -v b="$c1" -v n="$beats" 'BEGIN { printf "%.2f", (b - a) / n / 1000 }')"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v p="$1" -v u="$2" 'BEGIN { printf "%+.0f", (u / p - 1) * 100 }'; }

echo "redis-server $(cli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p'), nproc $(nproc)," \
  "$executions running executions, $beats beats per batch, $rounds rounds"
plain=() with=() plain_cpu=() with_cpu=()
for r in $(seq "$rounds"); do
  stream 0 0
  read -r w c <<<"$(batch)"
  plain+=("$w") plain_cpu+=("$c")
  stream 1 $((r * 1000000))
  read -r w c <<<"$(batch)"
  with+=("$w") with_cpu+=("$c")
  echo "  round $r: plain ${plain[-1]} µs (cpu ${plain_cpu[-1]}), with usage ${with[-1]} µs" \
    "(cpu ${with_cpu[-1]}) per EVALSHA"
done
p=$(printf '%s\n' "${plain[@]}" | median)
u=$(printf '%s\n' "${with[@]}" | median)
pc=$(printf '%s\n' "${plain_cpu[@]}" | median)
uc=$(printf '%s\n' "${with_cpu[@]}" | median)
echo "median: plain $p µs, with usage $u µs per EVALSHA: $(ratio "$p" "$u") %"
echo "median server CPU per beat: plain $pc µs, with usage $uc µs: $(ratio "$pc" "$uc") %"
echo "usage kept: $(cli hget "$tag:q:bench:usage" t)"
