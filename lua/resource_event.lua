-- resource_event: checks an attempt token on the execution's partition and, when asked,
-- records a resource lease event (resource_acquired, resource_released, resource_freed,
-- resource_force_released) in the partition's stream, so an execution's resource events
-- are read and followed with its other events. The resource's own keys live under
-- another hash tag: this is the second call of a resource operation, never a transition
-- of the execution (from and to are its state now; no history entry).
-- KEYS: 1 execution hash, 2 partition events stream
-- ARGV: 1 attempt, 2 nonce ('' = no token check: the watchdog's sweep, an operator),
--       3 reason ('' = check only: nothing written), 4 detail, 5 events max length
-- Reply: {'ok', state, current_attempt}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} (only with a nonce)
--        {'gone'} (no token check and no execution: nothing written)
--        {'bad_arg', name}
-- Prelude: _lib.lua

if not uint(ARGV[5]) then return { 'bad_arg', 'limits' } end
local v = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'q', 'id')
if ARGV[2] ~= '' then
  local verdict = token_verdict(v[1], v[2], v[3], v[4], ARGV[1], ARGV[2])
  if verdict then return verdict end
elseif not v[1] then
  return { 'gone' }
end
if ARGV[3] ~= '' then
  emit(KEYS[2], ARGV[5], v[5], v[6], ARGV[1], v[1], v[1], ARGV[3], ARGV[4])
end
return { 'ok', v[1], v[2] }
