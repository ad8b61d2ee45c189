-- The claim loop, shared by claim.lua and complete_claim.lua (prepended after _lib.lua).
-- q: { pending, slots, settings, events, start } keys of one queue, and queue, prefix
--    (prefix .. id is the execution hash), worker, default_cap, maxlen, cap (history).
-- Moves up to n available executions to dispatched, one capacity slot each; nonce(i)
-- gives the fresh attempt nonce of the i-th claim. Returns the reply
-- {'ok', stop, next_available_ms, count, then per claim: id, attempt, nonce, payload,
--  checkpoint, heartbeat_timeout_ms, deadline_at_ms, resume_input, traceparent}; stop is 'done' (n
-- claimed), 'empty' (nothing available), 'full' (no slot) or 'paused' (the queue is
-- paused: none claimed); next_available_ms is the earliest pending score when stop is
-- 'empty', else ''.
local function claim_available(q, n, nonce, now)
  -- Read once per script: a batch of claims shares them (settings cannot change
  -- meanwhile). A paused queue (lua/_pause.lua) gives nothing.
  if not q.capacity then
    local s = redis.call('HMGET', q.settings, 'cap', 'pat')
    q.capacity, q.paused = uint(s[1]) or q.default_cap, s[2] and true or false
  end
  if q.paused then return { 'ok', 'paused', '', 0 } end
  local capacity = q.capacity
  local now_n = tonumber(now)
  local reply = { 'ok', 'done', '', 0 }
  local claimed = 0
  while claimed < n do
    if redis.call('HLEN', q.slots) >= capacity then reply[2] = 'full'; break end
    local head = redis.call('ZRANGEBYSCORE', q.pending, '-inf', now, 'LIMIT', '0', '1')
    if #head == 0 then
      -- Nothing due: say when the earliest delayed execution will be (if any).
      reply[2] = 'empty'
      local later = redis.call('ZRANGE', q.pending, 0, 0, 'WITHSCORES')
      if #later > 0 then reply[3] = math.ceil(tonumber(later[2])) end
      break
    end
    local id = head[1]
    redis.call('ZREM', q.pending, id)
    local key = q.prefix .. id
    local e = redis.call('HMGET', key, 'st', 'att', 'pl', 'cp', 'ht', 'sg', 'dla', 'hn', 'ri', 'tp')
    -- A pending entry whose execution is not queued is a stale hint: drop it, move on.
    if e[1] == 'queued' then
      local att = tostring(tonumber(e[2]) + 1)
      local tok = nonce(claimed + 1)
      local hist = { hist_push(e[8], now, 'dispatched', 'claimed', att, q.cap) }
      if e[2] == '0' then
        redis.call('HSET', key, 'st', 'dispatched', 'att', att, 'tok', tok, 'wk', q.worker,
          'dsp', now, unpack(hist))
      else
        -- A retry: clear what the earlier attempt left behind (the checkpoint stays; the
        -- run of identical fingerprints starts afresh).
        redis.call('HSET', key, 'st', 'dispatched', 'att', att, 'tok', tok, 'wk', q.worker,
          'dsp', now, 'sta', '', 'hb', '', 'pr', '', 'prc', '', 'ss', '', 'fp', '', 'fpn', '',
          unpack(hist))
      end
      redis.call('HSET', q.slots, id, att .. ':' .. q.worker)
      redis.call('ZADD', q.start, tostring(now_n + tonumber(e[6])), q.queue .. '/' .. id)
      emit(q.events, q.maxlen, q.queue, id, att, 'queued', 'dispatched', 'claimed', q.worker)
      claimed = claimed + 1
      reply[#reply + 1] = id
      reply[#reply + 1] = att
      reply[#reply + 1] = tok
      reply[#reply + 1] = e[3] or ''
      reply[#reply + 1] = e[4] or ''
      reply[#reply + 1] = e[5]
      reply[#reply + 1] = e[7]
      reply[#reply + 1] = e[9] or ''
      reply[#reply + 1] = e[10] or ''
    end
  end
  reply[4] = claimed
  return reply
end
