-- The completion of an attempt, used by complete_claim.lua (prepended after _lib.lua).

-- k: { events, slots, start, heartbeat, progress, deadline, stuck, cancel, succeeded }
--    keys of the queue, and q, the script's claim state (lua/_claim.lua): the slot, the
--    start timer and the 'succeeded' entry go to its collected writes, which claim_flush
--    writes; exec the execution hash; member "<queue>/<id>"; attempt and nonce from the
--    token; result JSON text ('' for none); maxlen and cap (history) validated
--    by the caller; now from now_str().
-- Returns {'ok', slot_released 0|1} or the refusal of token_verdict (nothing written).
local function complete_attempt(k, exec, member, attempt, nonce, result, maxlen, cap, now)
  local e = redis.call('HMGET', exec, 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id', 'dla')
  local verdict = token_verdict(e[1], e[2], e[3], e[4], attempt, nonce)
  if verdict then return verdict end

  local st, att, id = e[1], e[2], e[8]
  local released
  local q = k.q
  if q and q.slot_new and q.slot_new[id] then
    -- Claimed by this very script: its slot is not written yet, and now never will be.
    q.slot_new[id] = nil
    released = 1
  else
    -- The token is the current attempt's and the execution active, so the slot is this
    -- attempt's (an active execution holds a slot with its current attempt, always): no
    -- need to read the holder first, as release_slot does.
    released = redis.call('HDEL', k.slots, id)
  end
  local cancel_requested = e[5] and e[5] ~= ''
  if q and st == 'dispatched' then
    collect(q, 'unstart', member)
    if cancel_requested then redis.call('ZREM', k.cancel, member) end
  else
    drop_active_timers(k, member, st, cancel_requested)
  end
  if e[9] ~= '0' then redis.call('ZREM', k.deadline, member) end
  become_terminal({ key = exec, list = k.succeeded, events = k.events, maxlen = maxlen,
    cap = cap, queue = e[7], id = id, att = att, from = st, hn = e[6],
    pushed = q and collected(q, 'finished') }, now, 'succeeded', 'succeeded', 'completed',
    nil, result)
  return { 'ok', released }
end
