-- pin: keep an execution whatever the retention says, or let retention apply again.
-- Unpinning an execution that had moved to its list's ":kept" list (it was past its
-- retention when pruning met it) puts it back at the head of its terminal list, where it
-- belongs by finish time (older than every execution there), so the next prune judges it.
-- KEYS: 1 execution hash
-- ARGV: 1 '1' to pin, '0' to unpin, 2 the queue's terminal-list prefix
--       ("<queue prefix><queue><finished suffix>"), 3 id
-- Reply: {'ok', state} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua

if ARGV[1] ~= '1' and ARGV[1] ~= '0' then return { 'bad_arg', 'pin' } end
local e = redis.call('HMGET', KEYS[1], 'st', 'kept')
if not e[1] then return { 'missing' } end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'pin', '1')
  return { 'ok', e[1] }
end
redis.call('HDEL', KEYS[1], 'pin')
if e[2] == '1' then
  local list = ARGV[2] .. e[1]
  redis.call('LREM', list .. ':kept', 1, ARGV[3])
  redis.call('LPUSH', list, ARGV[3])
  redis.call('HDEL', KEYS[1], 'kept')
end
return { 'ok', e[1] }
