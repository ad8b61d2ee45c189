-- The completion of an attempt, used by complete_claim.lua (prepended after _lib.lua).

-- k: { events, slots, start, heartbeat, progress, deadline, stuck, cancel, succeeded }
--    keys of the queue; exec the execution hash; member "<queue>/<id>"; attempt and nonce
--    from the token; result JSON text ('' for none); maxlen and cap (history) validated
--    by the caller; now from now_str().
-- Returns {'ok', slot_released 0|1} or the refusal of token_verdict (nothing written).
local function complete_attempt(k, exec, member, attempt, nonce, result, maxlen, cap, now)
  local e = redis.call('HMGET', exec, 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id', 'dla')
  local verdict = token_verdict(e[1], e[2], e[3], e[4], attempt, nonce)
  if verdict then return verdict end

  local st, att, id = e[1], e[2], e[8]
  local released = release_slot(k.slots, id, att)
  drop_active_timers(k, member, st, e[5] and e[5] ~= '')
  if e[9] ~= '0' then redis.call('ZREM', k.deadline, member) end
  become_terminal({ key = exec, list = k.succeeded, events = k.events, maxlen = maxlen,
    cap = cap, queue = e[7], id = id, att = att, from = st, hn = e[6] }, now, 'succeeded',
    'succeeded', 'completed', nil, result)
  return { 'ok', released }
end
