#!/usr/bin/env bash
# The heartbeat script's server-side cost, without our client: a pipelined redis-cli
# --pipe sends EVALSHA of lua/heartbeat.lua (joined as src/scripts.rs joins it,
# benches/lua_source.sh) against EXECUTIONS running executions on a throwaway
# redis-server (unix socket), shaped as a claim and first beat leave them today (compact
# listpack hashes). In turn, ROUNDS times: single beats (a batch of one), batches of BATCH
# beats, and the minimal batched script the issue compares against (per beat: read state
# and token, check them, set the last beat, move the timer). Prints the server's CPU µs
# per beat (its main thread, /proc/<pid>/schedstat: not inflated when the machine is
# busy) and INFO commandstats µs per call, the medians with their spread, and the ratios.
#
#   benches/heartbeat_ceiling.sh
#
# Knobs: EXECUTIONS (10000), BEATS per batch of calls (200000), BATCH (100), ROUNDS (3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
executions=${EXECUTIONS:-10000}
beats=${BEATS:-200000}
batch=${BATCH:-100}
rounds=${ROUNDS:-3}

# shellcheck source=redis_bench.sh
source "$root/benches/redis_bench.sh"

tag='{bench:0}'
now=$(($(date +%s) * 1000))
awk -v n="$executions" -v now="$now" -v tag="$tag" '
  function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
  function cmd(argc, args,   i) { printf "*%d\r\n", argc; for (i = 1; i <= argc; i++) bulk(args[i]) }
  BEGIN {
    split("q bench st running att 1 tok n1 wk w0 dsp " now " hb " now " pr - prc " now \
          " ss - pl {\"n\":1} cr " now " sg 30000 ht 30000 npt 0 dl 0 dla 0 stt 30000" \
          " ma 2 bb 1000 bm 300000 cg 30000 sta " now " h0 0|" now "|queued|enqueued|0" \
          " h1 1|" now "|dispatched|claimed|1 h2 2|" now "|running|started|1 hn 3", f, " ")
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

sha=$(load_script heartbeat)
# The minimal batched script: KEYS heartbeat timer, then the executions; ARGV the
# members, attempts and nonces.
minimal=$(cli script load "
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 2, #KEYS do
  local a = 3 * (i - 2)
  local h = redis.call('HMGET', KEYS[i], 'st', 'att', 'tok', 'ht')
  if h[1] == 'running' and h[2] == ARGV[a + 2] and h[3] == ARGV[a + 3] then
    redis.call('HSET', KEYS[i], 'hb', now)
    redis.call('ZADD', KEYS[1], now + tonumber(h[4]), ARGV[a + 1])
  end
end
return #KEYS - 1")
[[ $minimal =~ ^[0-9a-f]{40}$ ]] || { echo "script load failed: $minimal" >&2; exit 1; }
sample="$tag:x:bench/000000"
echo "redis-server $(cli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p'), nproc $(nproc)," \
  "$executions running executions, hash encoding $(cli object encoding "$sample")," \
  "$(cli memory usage "$sample") B each; $beats beats per measurement, batches of $batch"

# The command stream of $beats beats: our script in calls of $1 beats ("minimal": the
# minimal script in calls of $batch).
stream() {
  awk -v n="$beats" -v e="$executions" -v tag="$tag" -v sha="$sha" -v min="$minimal" \
    -v per="$1" -v batch="$batch" '
    function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
    BEGIN {
      minimal = per == "minimal"
      if (minimal) per = batch
      for (c = 0; c < n / per; c++) {
        if (minimal) {
          printf "*%d\r\n", 3 + 1 + 4 * per
          bulk("EVALSHA"); bulk(min); bulk(1 + per); bulk(tag ":timer:heartbeat")
          for (j = 0; j < per; j++) bulk(tag ":x:bench/" sprintf("%06d", (c * per + j) % e))
          for (j = 0; j < per; j++) { bulk("bench/" sprintf("%06d", (c * per + j) % e)); bulk("1"); bulk("n1") }
          continue
        }
        printf "*%d\r\n", 3 + 7 + per + 2 + 7 * per
        bulk("EVALSHA"); bulk(sha); bulk(7 + per)
        bulk(tag ":events"); bulk(tag ":timer:start"); bulk(tag ":timer:heartbeat")
        bulk(tag ":timer:progress"); bulk(tag ":timer:stuck"); bulk(tag ":timer:cancel")
        bulk(tag ":usage:journals")
        for (j = 0; j < per; j++) bulk(tag ":x:bench/" sprintf("%06d", (c * per + j) % e))
        bulk("10000"); bulk("32")
        for (j = 0; j < per; j++) {
          bulk("bench/" sprintf("%06d", (c * per + j) % e)); bulk("1"); bulk("n1")
          bulk(""); bulk(""); bulk(""); bulk("")
        }
      }
    }' >"$dir/stream"
}


# Runs the stream; prints the server's CPU µs per beat and the commandstats µs per call.
run() {
  cli config resetstat >/dev/null
  local c0 c1 stats
  c0=$(cpu_ns)
  cli --pipe <"$dir/stream" >/dev/null
  c1=$(cpu_ns)
  stats=$(cli info commandstats | grep '^cmdstat_evalsha:')
  case $stats in
    *failed_calls=0*) ;;
    *) echo "calls failed: $stats" >&2; exit 1 ;;
  esac
  awk -v a="$c0" -v b="$c1" -v n="$beats" 'BEGIN { printf "%.2f", (b - a) / n / 1000 }'
  echo " $(echo "$stats" | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')"
}

single=() batched=() minimal_cpu=() single_s=() batched_s=() minimal_s=()
for r in $(seq "$rounds"); do
  stream 1; read -r c w <<<"$(run)"; single+=("$c") single_s+=("$w")
  stream "$batch"; read -r c w <<<"$(run)"; batched+=("$c") batched_s+=("$w")
  stream minimal; read -r c w <<<"$(run)"; minimal_cpu+=("$c") minimal_s+=("$w")
  echo "  round $r: server CPU µs per beat: single ${single[-1]}, batched ${batched[-1]}," \
    "minimal batched ${minimal_cpu[-1]}"
done
m() { printf '%s\n' "$@" | median; }
s() { printf '%s\n' "$@" | spread; }
sc=$(m "${single[@]}") bc=$(m "${batched[@]}") mc=$(m "${minimal_cpu[@]}")
echo "median server CPU µs per beat (spread):"
echo "  single beats            $sc ($(s "${single[@]}"))"
echo "  batches of $batch          $bc ($(s "${batched[@]}")): $(awk -v a="$sc" -v b="$bc" 'BEGIN { printf "%.1f", a / b }')× fewer µs than single"
echo "  minimal batched script  $mc ($(s "${minimal_cpu[@]}")): ours is $(awk -v a="$bc" -v b="$mc" 'BEGIN { printf "%.2f", a / b }')× it"
echo "median commandstats µs per call: single $(m "${single_s[@]}"), batch of $batch $(m "${batched_s[@]}")," \
  "minimal batch of $batch $(m "${minimal_s[@]}")"
