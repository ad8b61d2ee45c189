-- complete_claim: complete attempts of one queue and, for each completion that was
-- recorded, claim the next available executions of the queue for its worker. One item is
-- `complete` (no claims) or one worker's loop (finish one, take the next); concurrent
-- calls for the same queue share one script call (src/ledger/finish.rs). Items run in
-- order, each as it would alone; all are validated before the first write.
-- KEYS: 1 partition events stream, 2 queue slots hash, 3 start, 4 heartbeat, 5 progress,
--       6 deadline, 7 stuck and 8 cancel timers, 9 queue 'succeeded' list, 10 queue
--       pending zset, 11 queue settings hash, 11+i execution hash of item i
-- ARGV: 1 queue, 2 execution key prefix, 3 events max length, 4 history cap, 5 default
--       capacity, then per item: timer member "<queue>/<id>", attempt, nonce, result
--       JSON ('' for none), worker id, N (claims wanted, 0 for none), N fresh nonces
-- Reply: {'ok', then per item: completion, claims}: completion is {'ok', slot_released}
--        or {'stale', current_attempt, state} | {'mismatch', current_attempt, state} |
--        {'terminal', state, stop_reason} | {'missing'} (nothing written for the item);
--        claims is claim.lua's reply, or {'none'} when N is 0 or the completion was refused
--        {'bad_arg', name} when an argument is malformed (nothing written)
-- Prelude: _lib.lua, _claim.lua, _complete.lua

local maxlen, cap, default_cap = ARGV[3], uint(ARGV[4]), uint(ARGV[5])
if not uint(maxlen) or not cap or not default_cap then return { 'bad_arg', 'limits' } end
local starts, a, want = {}, 6, 0
while a <= #ARGV do
  local n = uint(ARGV[a + 5])
  if not n or a + 5 + n > #ARGV then return { 'bad_arg', 'claims' } end
  want = want + n
  for j = 1, n do
    if ARGV[a + 5 + j] == '' then return { 'bad_arg', 'nonce' } end
  end
  starts[#starts + 1] = a
  a = a + 6 + n
end
if #starts == 0 or #starts ~= #KEYS - 11 then return { 'bad_arg', 'arity' } end

local k = { events = KEYS[1], slots = KEYS[2], start = KEYS[3], heartbeat = KEYS[4],
  progress = KEYS[5], deadline = KEYS[6], stuck = KEYS[7], cancel = KEYS[8],
  succeeded = KEYS[9] }
local q = { pending = KEYS[10], slots = KEYS[2], settings = KEYS[11], events = KEYS[1],
  start = KEYS[3], succeeded = KEYS[9], queue = ARGV[1], prefix = ARGV[2],
  default_cap = default_cap, maxlen = maxlen, cap = cap, want = want }
k.q = q
local now = now_str()
local reply = { 'ok' }
for i, a in ipairs(starts) do
  local done = complete_attempt(k, KEYS[11 + i], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    ARGV[a + 3], maxlen, cap, now)
  reply[#reply + 1] = done
  -- The slot count a claim of this script read (lua/_claim.lua) follows the release.
  if done[1] == 'ok' and done[2] == 1 and q.used then q.used = q.used - 1 end
  local n = tonumber(ARGV[a + 5])
  if done[1] == 'ok' and n > 0 then
    q.worker = ARGV[a + 4]
    reply[#reply + 1] = claim_available(q, n, function(j) return ARGV[a + 5 + j] end, now)
  else
    reply[#reply + 1] = { 'none' }
  end
end
claim_flush(q)
return reply
