#!/usr/bin/env bash
# What a usage delta adds to a heartbeat's Redis time: the heartbeat script (joined as
# src/scripts.rs joins it, benches/lua_source.sh) run by a pipelined redis-cli --pipe
# against EXECUTIONS running executions on a throwaway redis-server (unix socket), in
# turn: plain beats, beats each carrying a usage delta (its own increasing seq, a model
# named: every delta is applied, none is a replay) of executions without a budget, and
# the same of executions with one (judged on the beat), ROUNDS times. After each batch
# of deltas the fold script (lua/usage_fold.lua, as the watchdog's round runs it) adds
# the journal to the sums. Prints the server's CPU time per beat and per folded delta,
# the medians and the ratios to a plain beat. redis-benchmark cannot number the deltas,
# hence the generated command stream.
#
#   benches/heartbeat_usage_ceiling.sh
#
# Knobs: EXECUTIONS (10000), BEATS per batch (200000), ROUNDS (3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
executions=${EXECUTIONS:-10000}
beats=${BEATS:-200000}
rounds=${ROUNDS:-3}

# shellcheck source=redis_bench.sh
source "$root/benches/redis_bench.sh"

# One beat per call (a batch of one), as `Ledger::heartbeat` sends it. Two queues of
# running executions, as they are after their first delta fixed the
# budget: "bench" without one ('0|0|0'), "budgeted" with a budget no beat reaches.
tag='{bench:0}'
now=$(($(date +%s) * 1000))
awk -v n="$executions" -v now="$now" -v tag="$tag" '
  function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
  function cmd(argc, args,   i) { printf "*%d\r\n", argc; for (i = 1; i <= argc; i++) bulk(args[i]) }
  BEGIN {
    split("st running att 1 tok n1 wk w0 dsp " now " hb " now " pr - prc " now \
          " ss - pl {\"n\":1} cr " now " sg 30000 ht 30000 npt 0 dl 0 dla 0 stt 30000" \
          " ma 2 bb 1000 bm 300000 cg 30000 sta " now, f, " ")
    split("bench budgeted", queues, " ")
    split("0|0|0 1000000000000000|0|800", budgets, " ")
    for (qi = 1; qi <= 2; qi++) {
      q = queues[qi]
      for (i = 0; i < n; i++) {
        id = sprintf("%06d", i)
        a[1] = "HSET"; a[2] = tag ":x:" q "/" id; c = 2
        for (j = 1; j in f; j++) { v = f[j]; if (v == "-") v = ""; a[++c] = v }
        a[++c] = "q"; a[++c] = q; a[++c] = "id"; a[++c] = id; a[++c] = "bg"; a[++c] = budgets[qi]
        cmd(c, a)
        b[1] = "ZADD"; b[2] = tag ":timer:heartbeat"; b[3] = now + 30000; b[4] = q "/" id
        cmd(4, b)
      }
    }
  }' | cli --pipe >/dev/null

sha=$(load_script heartbeat)
fold_sha=$(load_script usage_fold)

# The command stream of one batch of beats, written before the clock starts: plain
# ("plain"), or each beat with a delta numbered from `first` (queue "bench" or
# "budgeted").
stream() {
  awk -v n="$beats" -v e="$executions" -v tag="$tag" -v sha="$sha" -v kind="$1" -v first="$2" '
    function bulk(s) { printf "$%d\r\n%s\r\n", length(s), s }
    BEGIN {
      usage = kind != "plain"
      q = usage ? kind : "bench"
      for (i = 0; i < n; i++) {
        id = sprintf("%06d", i % e)
        printf "*%d\r\n", usage ? 22 : 20
        bulk("EVALSHA"); bulk(sha); bulk(usage ? 10 : 8)
        bulk(tag ":events"); bulk(tag ":timer:start"); bulk(tag ":timer:heartbeat")
        bulk(tag ":timer:progress"); bulk(tag ":timer:stuck"); bulk(tag ":timer:cancel")
        bulk(tag ":usage:journals"); bulk(tag ":x:" q "/" id)
        if (usage) { bulk(tag ":q:" q ":uj"); bulk(tag ":q:" q ":conf") }
        bulk("10000"); bulk("32")
        bulk(q "/" id); bulk("1"); bulk("n1"); bulk(""); bulk(""); bulk("")
        bulk(usage ? q "/" id "|1|" (first + int(i / e)) "|1200|300|0|4500|bench-model" : "")
      }
    }' >"$dir/stream"
}


# Runs the stream; prints the server's CPU µs per beat and the µs per EVALSHA of INFO
# commandstats (the script's own run time, wall clock).
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
  awk -v a="$c0" -v b="$c1" -v n="$beats" 'BEGIN { printf "%.2f", (b - a) / n / 1000 }'
  echo " $(echo "$stats" | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')"
}

# Folds every journal as the watchdog's round does; prints the server's CPU µs per delta.
fold() {
  local c0 c1 reply deltas=0
  c0=$(cpu_ns)
  while :; do
    reply=$(cli evalsha "$fold_sha" 2 "$tag:usage:journals" "$tag:events" "$tag:q:" "$tag:x:" \
      10000 "" 2000 ":uj" ":usage" ":conf")
    deltas=$((deltas + $(echo "$reply" | sed -n 2p)))
    [ "$(echo "$reply" | sed -n 3p)" = 1 ] || break
  done
  c1=$(cpu_ns)
  [ "$deltas" -eq "$beats" ] || { echo "folded $deltas deltas of $beats" >&2; exit 1; }
  awk -v a="$c0" -v b="$c1" -v n="$deltas" 'BEGIN { printf "%.2f", (b - a) / n / 1000 }'
}


echo "redis-server $(cli info server | sed -n 's/^redis_version:\(.*\)\r$/\1/p'), nproc $(nproc)," \
  "$executions running executions per queue, $beats beats per batch, $rounds rounds"
plain=() usage=() usage_fold=() budgeted=() budgeted_fold=()
plain_s=() usage_s=() budgeted_s=()
for r in $(seq "$rounds"); do
  stream plain 0
  read -r c w <<<"$(batch)"
  plain+=("$c") plain_s+=("$w")
  stream bench $((r * 1000000))
  read -r c w <<<"$(batch)"
  usage+=("$c") usage_s+=("$w")
  usage_fold+=("$(fold)")
  stream budgeted $((r * 1000000))
  read -r c w <<<"$(batch)"
  budgeted+=("$c") budgeted_s+=("$w")
  budgeted_fold+=("$(fold)")
  echo "  round $r: server CPU µs per beat: plain ${plain[-1]}, with usage ${usage[-1]}" \
    "(fold ${usage_fold[-1]} per delta), budgeted ${budgeted[-1]} (fold ${budgeted_fold[-1]})"
done
m() { printf '%s\n' "$@" | median; }
s() { printf '%s\n' "$@" | spread; }
p=$(m "${plain[@]}") u=$(m "${usage[@]}") uf=$(m "${usage_fold[@]}")
b=$(m "${budgeted[@]}") bf=$(m "${budgeted_fold[@]}")
echo "median server CPU per beat (spread):"
echo "  plain                 $p µs ($(s "${plain[@]}"))"
echo "  with usage            $u µs ($(s "${usage[@]}")): $(ratio "$p" "$u") %"
echo "  with usage, budgeted  $b µs ($(s "${budgeted[@]}")): $(ratio "$p" "$b") %"
ps=$(m "${plain_s[@]}") us=$(m "${usage_s[@]}") bs=$(m "${budgeted_s[@]}")
echo "median µs per EVALSHA (commandstats): plain $ps, with usage $us ($(ratio "$ps" "$us") %)," \
  "budgeted $bs ($(ratio "$ps" "$bs") %)"
echo "  fold per delta        $uf µs without a budget, $bf µs budgeted (in batches of 2000)"
echo "queue usage kept: $(cli hget "$tag:q:bench:usage" t), $(cli hget "$tag:q:budgeted:usage" t)"
