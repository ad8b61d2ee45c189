-- complete_claim: complete the current attempt and, when that was recorded, claim the
-- next available executions of the same queue for the same worker: a worker's loop in
-- one script instead of two.
-- KEYS: 1..10 as complete.lua (execution hash, partition events stream, queue slots hash,
--       start, heartbeat, progress, deadline, stuck and cancel timers, queue 'succeeded'
--       index), 11 queue pending zset, 12 queue settings hash
-- ARGV: 1..6 as complete.lua (timer member, attempt, nonce, result JSON, events max
--       length, history cap), 7 queue, 8 execution key prefix, 9 worker id, 10 N (max
--       claims), 11 default capacity, 12 .. 11+N one fresh attempt nonce per claim
-- Reply: {completion, claims}: completion as complete.lua's reply; claims as claim.lua's
--        reply when the completion was recorded, else {'none'}
--        {'bad_arg', name} when an argument is malformed (nothing written)

local n, default_cap = uint(ARGV[10]), uint(ARGV[11])
if not uint(ARGV[5]) or not uint(ARGV[6]) or not n or n < 1 or not default_cap then
  return { 'bad_arg', 'limits' }
end
for i = 1, n do
  if not ARGV[11 + i] or ARGV[11 + i] == '' then return { 'bad_arg', 'nonce' } end
end

local cap, now = tonumber(ARGV[6]), now_str()
local done = complete_attempt(completion_keys(), ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], cap, now)
if done[1] ~= 'ok' then return { done, { 'none' } } end
return { done, claim_available({ pending = KEYS[11], slots = KEYS[3], settings = KEYS[12],
  events = KEYS[2], start = KEYS[4], queue = ARGV[7], prefix = ARGV[8], worker = ARGV[9],
  default_cap = default_cap, maxlen = ARGV[5], cap = cap },
  n, function(i) return ARGV[11 + i] end, now) }
