#!/usr/bin/env bash
# Prints a script's source as src/scripts.rs joins it: lua/_clock.lua, then the script's
# own file; the preludes its "-- Prelude:" line names go at its "-- (the preludes go
# here)" line, or before it when it has none. For the benches that load a script
# themselves.
#
#   benches/lua_source.sh heartbeat | redis-cli -x script load
set -euo pipefail

lua=${LUA_DIR:-$(cd "$(dirname "$0")/../lua" && pwd)}
own="$lua/$1.lua"
[ -f "$own" ] || { echo "no script $own" >&2; exit 1; }
preludes=$(sed -n 's/^-- Prelude: *//p' "$own" | tr ',' ' ')
marker='-- (the preludes go here)'
shared() { for p in $preludes; do cat "$lua/${p%.lua}.lua"; echo; done; }

cat "$lua/_clock.lua"; echo
if grep -qxF -- "$marker" "$own"; then
  awk -v m="$marker" '$0 == m { exit } { print }' "$own"; echo
  shared
  awk -v m="$marker" 'found { print } $0 == m { found = 1 }' "$own"
else
  shared
  cat "$own"
fi
