-- The claim loop, shared by claim.lua and complete_claim.lua (prepended after _lib.lua).
-- q: { pending, slots, settings, events, start, succeeded } keys of one queue, and queue, prefix
--    (prefix .. id is the execution hash), worker, default_cap, maxlen, cap (history),
--    want (claims the whole script may make, at most: how many due ids to read at once).
-- Moves up to n available executions to dispatched, one capacity slot each; nonce(i)
-- gives the fresh attempt nonce of the i-th claim. Returns the reply
-- {'ok', stop, next_available_ms, count, then per claim: id, attempt, nonce, payload,
--  checkpoint, heartbeat_timeout_ms, deadline_at_ms, resume_input, traceparent}; stop is 'done' (n
-- claimed), 'empty' (nothing available), 'full' (no slot) or 'paused' (the queue is
-- paused: none claimed); next_available_ms is the earliest pending score when stop is
-- 'empty', else ''.
--
-- What a script reads once, however many claims it makes (nothing else writes the queue
-- meanwhile): the settings, the slots in use (HLEN, then counted here: a completion of
-- the script that frees one lowers q.used) and the due ids, read from the head of the
-- pending zset in one ZRANGEBYSCORE. The ids taken stay in the zset until claim_flush
-- removes them at the end of the script; until then they are its first q.taken entries,
-- which the reads skip.
--
-- What a script writes once: the index entries of its claims and completions (the slots
-- taken, the start timers set and removed, the ids leaving the pending zset, the ids
-- joining the 'succeeded' list) are collected in q and written by claim_flush in one
-- call per index, in an order that leaves what the calls one by one would have left (a
-- claim's slot and timer are written before any removal). The execution hashes and the
-- events are written as each step happens. A script that claims or completes calls
-- claim_flush before it returns.

-- The list `name` of q's collected writes (created empty).
local function collected(q, name)
  local list = q[name]
  if not list then
    list = {}
    q[name] = list
  end
  return list
end

-- Appends `...` to the list `name` of q's collected writes.
local function collect(q, name, ...)
  local list = collected(q, name)
  for i = 1, select('#', ...) do list[#list + 1] = select(i, ...) end
end

-- Calls write(<part of list>) in chunks of `per` entries (unpack takes a few thousand);
-- write names its command literally (src/conn/access.rs checks every command a script
-- calls).
local function write_all(list, per, write)
  if not list then return end
  for i = 1, #list, per do
    write(unpack(list, i, math.min(i + per - 1, #list)))
  end
end

-- The next due id from the head of the pending zset, or nil when none is due; `need` is
-- how many the current claim still wants.
local function next_due(q, need, now)
  if not q.due or q.at > #q.due then
    if q.due and not q.more then return nil end
    local want = math.max(need, math.min(q.want or 0, 64))
    q.due = redis.call('ZRANGEBYSCORE', q.pending, '-inf', now, 'LIMIT', tostring(q.taken or 0),
      tostring(want))
    q.at, q.more = 1, #q.due == want
    q.want = (q.want or 0) - #q.due
    q.taken = q.taken or 0
    if #q.due == 0 then return nil end
  end
  local id = q.due[q.at]
  q.at, q.taken = q.at + 1, q.taken + 1
  collect(q, 'gone', id)
  return id
end

-- Writes the index entries the script's claims and completions collected.
local function claim_flush(q)
  if q.slot_ids then
    local held = {}
    for _, id in ipairs(q.slot_ids) do
      local holder = q.slot_new[id]
      -- nil: a completion of the same script released it again.
      if holder then
        held[#held + 1] = id
        held[#held + 1] = holder
      end
    end
    if #held > 0 then
      write_all(held, 1000, function(...) redis.call('HSET', q.slots, ...) end)
    end
  end
  write_all(q.starts, 1000, function(...) redis.call('ZADD', q.start, ...) end)
  write_all(q.unstart, 1000, function(...) redis.call('ZREM', q.start, ...) end)
  write_all(q.gone, 1000, function(...) redis.call('ZREM', q.pending, ...) end)
  write_all(q.finished, 1000, function(...) redis.call('RPUSH', q.succeeded, ...) end)
  q.slot_ids, q.slot_new, q.starts, q.unstart, q.gone, q.finished = nil, nil, nil, nil, nil, nil
end

local function claim_available(q, n, nonce, now)
  -- Read once per script: a batch of claims shares them (settings cannot change
  -- meanwhile). A paused queue (lua/_pause.lua) gives nothing.
  if not q.capacity then
    local s = redis.call('HMGET', q.settings, 'cap', 'pat')
    q.capacity, q.paused = uint(s[1]) or q.default_cap, s[2] and true or false
  end
  if q.paused then return { 'ok', 'paused', '', 0 } end
  if not q.used then q.used = redis.call('HLEN', q.slots) end
  local capacity = q.capacity
  local now_n = tonumber(now)
  local reply = { 'ok', 'done', '', 0 }
  local claimed = 0
  while claimed < n do
    if q.used >= capacity then reply[2] = 'full'; break end
    local id = next_due(q, n - claimed, now)
    if not id then
      -- Nothing due: say when the earliest delayed execution will be (if any), past the
      -- ids this script took.
      reply[2] = 'empty'
      local later = redis.call('ZRANGE', q.pending, tostring(q.taken), tostring(q.taken),
        'WITHSCORES')
      if #later > 0 then reply[3] = math.ceil(tonumber(later[2])) end
      break
    end
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
      collect(q, 'slot_ids', id)
      q.slot_new = q.slot_new or {}
      q.slot_new[id] = att .. ':' .. q.worker
      q.used = q.used + 1
      collect(q, 'starts', tostring(now_n + tonumber(e[6])), q.queue .. '/' .. id)
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
