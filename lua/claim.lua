-- claim: move up to N available queued executions to dispatched, one capacity slot each.
-- KEYS: 1 queue pending zset, 2 queue slots hash (id -> "<attempt>:<worker>"), 3 queue settings hash,
--       4 partition events stream, 5 start timer zset
-- ARGV: 1 queue, 2 execution key prefix (prefix .. id is the execution hash),
--       3 worker id, 4 N (max claims), 5 default capacity, 6 events max length,
--       7 history cap, 8 .. 7+N one fresh attempt nonce per claim
-- Reply: {'ok', stop, next_available_ms, count, then per claim:
--         id, attempt, nonce, payload, checkpoint, heartbeat_timeout_ms, deadline_at_ms,
--         resume_input ('' unless the claim continues a resumed wait)}
--        stop is 'done' (N claimed), 'empty' (nothing available), 'full' (no slot)
--        or 'paused' (the queue is paused, lua/_pause.lua: nothing claimed);
--        next_available_ms is the earliest pending score when stop is 'empty', else ''
--        {'bad_arg', name} when an argument is malformed (nothing written)
-- Prelude: _lib.lua, _claim.lua

local n = uint(ARGV[4])
local default_cap = uint(ARGV[5])
if not n or n < 1 or not default_cap or not uint(ARGV[6]) or not uint(ARGV[7]) then
  return { 'bad_arg', 'limits' }
end
for i = 1, n do
  if not ARGV[7 + i] or ARGV[7 + i] == '' then return { 'bad_arg', 'nonce' } end
end

return claim_available({ pending = KEYS[1], slots = KEYS[2], settings = KEYS[3],
  events = KEYS[4], start = KEYS[5], queue = ARGV[1], prefix = ARGV[2], worker = ARGV[3],
  default_cap = default_cap, maxlen = ARGV[6], cap = tonumber(ARGV[7]) },
  n, function(i) return ARGV[7 + i] end, now_str())
