# Sourced by the script benches (heartbeat_ceiling.sh, heartbeat_usage_ceiling.sh): a
# throwaway redis-server on a unix socket (gone at exit), `cli` to talk to it, the
# server's CPU time, a script loaded as src/scripts.rs joins it, and the statistics the
# benches print.

dir=$(mktemp -d)
sock="$dir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no --dir "$dir" \
  >"$dir/redis.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$dir"' EXIT
cli() { redis-cli -s "$sock" "$@"; }
for _ in $(seq 50); do cli ping >/dev/null 2>&1 && break; sleep 0.1; done

# CPU time (ns) the server's main thread has run so far: unlike the commandstats µs
# (wall clock), not inflated when a loaded machine takes the core away mid-script.
cpu_ns() { cut -d' ' -f1 "/proc/$server/schedstat"; }

# Loads lua/<name>.lua as src/scripts.rs joins it (benches/lua_source.sh); prints its SHA1.
load_script() {
  local sha
  sha=$("$(dirname "${BASH_SOURCE[0]}")/lua_source.sh" "$1" | cli -x script load)
  [[ $sha =~ ^[0-9a-f]{40}$ ]] || { echo "script load failed: $sha" >&2; exit 1; }
  echo "$sha"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { sort -n | awk '{ v[NR] = $1 } END { printf "%s–%s", v[1], v[NR] }'; }
ratio() { awk -v p="$1" -v u="$2" 'BEGIN { printf "%+.0f", (u / p - 1) * 100 }'; }
