-- usage_fold: adds queues' usage journals to the sums (lua/_usage.lua): every queue the
-- partition's journal index lists (the watchdog's round), or one queue (before a read).
-- KEYS: 1 partition's usage-journal index, 2 partition events stream
-- ARGV: 1 queue key prefix, 2 execution key prefix, 3 events max length, 4 queue (''
--       every listed one), 5 most entries to take, 6 journal suffix, 7 usage suffix,
--       8 settings suffix
-- Reply: {'ok', entries folded, more '1'|'0'} (more: call again)
-- Prelude: _lib.lua, _pause.lua, _usage.lua

-- Nothing to fold, the common case: answered before the preludes are defined.
if ARGV[4] == '' then
  if redis.call('SCARD', KEYS[1]) == 0 then return { 'ok', 0, 0 } end
elseif redis.call('LLEN', ARGV[1] .. ARGV[4] .. ARGV[6]) == 0 then
  return { 'ok', 0, 0 }
end
-- (the preludes go here)

local limit, maxlen = uint(ARGV[5]), uint(ARGV[3])
if not limit or limit < 1 or not maxlen then return { 'bad_arg', 'limits' } end
local queues = { ARGV[4] }
if ARGV[4] == '' then queues = redis.call('SMEMBERS', KEYS[1]) end
local now = now_str()
local folded, more = 0, false
for _, queue in ipairs(queues) do
  if limit - folded < 1 then more = true; break end
  local base = ARGV[1] .. queue
  local n, left = usage_fold({ journal = base .. ARGV[6], index = KEYS[1],
    usage = base .. ARGV[7], settings = base .. ARGV[8], events = KEYS[2], maxlen = maxlen,
    queue = queue, xprefix = ARGV[2] }, limit - folded, now)
  folded = folded + n
  if left then more = true end
end
return { 'ok', folded, more and 1 or 0 }
