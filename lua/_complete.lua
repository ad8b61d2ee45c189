-- The completion of an attempt, shared by complete.lua and complete_claim.lua (prepended
-- after _lib.lua).

-- The keys of a completion, which both scripts take as KEYS[1..10] in this order.
local function completion_keys()
  return { exec = KEYS[1], events = KEYS[2], slots = KEYS[3], start = KEYS[4],
    heartbeat = KEYS[5], progress = KEYS[6], deadline = KEYS[7], stuck = KEYS[8],
    cancel = KEYS[9], succeeded = KEYS[10] }
end

-- k: { exec, events, slots, start, heartbeat, progress, deadline, stuck, cancel,
--      succeeded } keys; member "<queue>/<id>"; attempt and nonce from the token; result
--      JSON text ('' for none); maxlen and cap (history) validated by the caller; now
--      from now_str().
-- Returns {'ok', slot_released 0|1} or the refusal of token_verdict (nothing written).
local function complete_attempt(k, member, attempt, nonce, result, maxlen, cap, now)
  local e = redis.call('HMGET', k.exec, 'st', 'att', 'tok', 'sr', 'cx', 'hist', 'q', 'id',
    'dla')
  local verdict = token_verdict(e[1], e[2], e[3], e[4], attempt, nonce)
  if verdict then return verdict end

  local st, att, id = e[1], e[2], e[8]
  local released = release_slot(k.slots, id, att)
  drop_active_timers(k, member, st, e[5] and e[5] ~= '')
  if e[9] ~= '0' then redis.call('ZREM', k.deadline, member) end
  local hist = hist_push(e[6], now, 'succeeded', 'completed', att, cap)
  if result == '' then
    redis.call('HSET', k.exec, 'st', 'succeeded', 'sr', 'succeeded', 'fin', now, 'hist', hist)
  else
    redis.call('HSET', k.exec, 'st', 'succeeded', 'sr', 'succeeded', 'fin', now, 'res', result,
      'hist', hist)
  end
  redis.call('ZADD', k.succeeded, now, id)
  emit(k.events, maxlen, e[7], id, att, st, 'succeeded', 'completed', '')
  return { 'ok', released }
end
