-- Queue pause, shared by pause_queue.lua, resume_queue.lua, set_queue.lua and any script
-- that pauses a queue by itself (a queue budget, reason 'budget'); prepended after
-- _lib.lua. A queue's pause is three fields of its settings hash, so a claim reads it
-- with the capacity in one HMGET (lua/_claim.lua), and set_queue.lua keeps them when it
-- rewrites the settings:
--   pat paused at (ms; absent: the queue runs)
--   pby who paused it (a credential's scope, `cli:<user>`, a library caller's name)
--   pwhy why
-- p = { settings, events, maxlen, queue }: the queue's settings hash, its partition's
-- event stream and that stream's cap, the queue's name.
local PAUSE_FIELDS = { 'pat', 'pby', 'pwhy' }

-- The pause in force: { at, by, why }, or nil when the queue runs.
local function queue_pause(settings)
  local cur = redis.call('HMGET', settings, 'pat', 'pby', 'pwhy')
  if not cur[1] then return nil end
  return { cur[1], cur[2] or '', cur[3] or '' }
end

-- The detail of a pause or resume event: who, then why.
local function pause_detail(by, why)
  if why == '' then return 'by ' .. by end
  return 'by ' .. by .. ': ' .. why
end

-- Pauses the queue unless it is paused: returns true (event `queue_paused` emitted), or
-- false and the pause in force (nothing written).
local function pause_queue(p, now, by, why)
  local cur = queue_pause(p.settings)
  if cur then return false, cur end
  redis.call('HSET', p.settings, 'pat', now, 'pby', by, 'pwhy', why)
  emit(p.events, p.maxlen, p.queue, '', 0, '', '', 'queue_paused', pause_detail(by, why))
  return true
end

-- Resumes the queue if it is paused: returns true and the pause it ended (event
-- `queue_resumed` emitted: it wakes the queue's waiting claims), or false (nothing
-- written).
local function resume_queue(p, by, why)
  local cur = queue_pause(p.settings)
  if not cur then return false end
  redis.call('HDEL', p.settings, unpack(PAUSE_FIELDS))
  emit(p.events, p.maxlen, p.queue, '', 0, '', '', 'queue_resumed', pause_detail(by, why))
  return true, cur
end
