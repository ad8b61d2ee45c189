-- Helpers of the watchdog scripts, prepended after _lib.lua.
-- Watchdog scripts act on many queues of one partition, so besides KEYS they derive keys
-- from the partition tag T (ARGV), exactly as src/keys.rs lays them out:
--   execution  T:x:<queue>/<id>       pending  T:q:<queue>:pending
--   slots      T:q:<queue>:slots      finished T:q:<queue>:s:<state>
-- Every key shares the tag, so each script still touches a single Cluster slot.

-- Fencing (invariant 4): act only while (owner, epoch) is the partition's current lease.
-- Once it is, every event this script writes names that replica and epoch.
local function lease_current(lease_key, owner, epoch, now)
  local l = redis.call('HMGET', lease_key, 'owner', 'epoch', 'exp')
  if l[1] == owner and l[2] == epoch and tonumber(l[3] or 0) > now then
    ACTOR = owner .. '@' .. epoch
    return true
  end
  return false
end

local EXEC_FIELDS = { 'st', 'att', 'dl', 'sg', 'ht', 'npt', 'dla', 'stt', 'ma', 'bb', 'bm', 'cg',
  'dsp', 'hb', 'prc', 'ss', 'sk', 'cx', 'wk', 'hist', 'q', 'id', 'err', 'sd' }

-- Loads an execution for judgement; nil when absent, false when a field it needs is
-- damaged (never raise mid-script: Redis does not roll back the writes already made).
local function load_exec(T, member)
  local key = T .. ':x:' .. member
  local v = redis.call('HMGET', key, unpack(EXEC_FIELDS))
  if not v[1] then return nil end
  local e = { key = key, member = member }
  for i, name in ipairs(EXEC_FIELDS) do e[name] = v[i] end
  for _, name in ipairs({ 'att', 'dl', 'sg', 'ht', 'npt', 'dla', 'stt', 'ma', 'bb', 'bm', 'cg' }) do
    e[name] = tonumber(e[name])
    if e[name] == nil then return false end
  end
  for _, name in ipairs({ 'dsp', 'hb', 'prc', 'ss', 'cx' }) do
    e[name] = tonumber(e[name]) -- nil when unset
  end
  if not e.q or not e.id then return false end
  return e
end

local ACTIVE = { dispatched = true, running = true, stuck = true }

-- timers = { deadline, start, heartbeat, progress, stuck, cancel } keys of the partition.
local function leave_active(T, e, timers)
  local released = 0
  if ACTIVE[e.st] then
    released = release_slot(T .. ':q:' .. e.q .. ':slots', e.id, e.att)
  end
  drop_active_timers(timers, e.member, e.st, e.cx ~= nil)
  return released
end

-- A terminal verdict by the watchdog (timed_out, cancelled, dead).
local function finish(T, e, timers, now, to, stop_reason, reason, detail, due, ctx)
  leave_active(T, e, timers)
  if e.st == 'queued' then redis.call('ZREM', T .. ':q:' .. e.q .. ':pending', e.id) end
  redis.call('ZREM', timers.deadline, e.member)
  redis.call('HSET', e.key, 'st', to, 'sr', stop_reason, 'fin', now, 'err', detail,
    'hist', hist_push(e.hist, now, to, reason, e.att, ctx.hist_cap))
  redis.call('RPUSH', T .. ':q:' .. e.q .. ':s:' .. to, e.id)
  emit(ctx.events, ctx.maxlen, e.q, e.id, e.att, e.st, to, reason, detail, due)
end

-- The attempt was lost (never started, stuck past its threshold, orphaned): retry it as a
-- new attempt after its backoff if attempts remain, else dead with a message that names
-- the latest failure. A lost attempt whose cancellation was requested ends cancelled.
-- Returns 'retried', 'dead' or 'cancelled'.
local function retry_or_dead(T, e, timers, now, stop_reason, detail, due, ctx)
  if e.cx then
    finish(T, e, timers, now, 'cancelled', 'cancelled', stop_reason, detail, due, ctx)
    return 'cancelled'
  end
  if e.att < e.ma then
    leave_active(T, e, timers)
    local delay = e.bb * (2 ^ (e.att - 1))
    if delay > e.bm then delay = e.bm end
    redis.call('HSET', e.key, 'st', 'queued', 'tok', '', 'wk', '', 'ss', '', 'sk', '',
      'err', detail, 'hist', hist_push(e.hist, now, 'queued', stop_reason, e.att, ctx.hist_cap))
    redis.call('ZADD', T .. ':q:' .. e.q .. ':pending', now + math.floor(delay), e.id)
    emit(ctx.events, ctx.maxlen, e.q, e.id, e.att, e.st, 'queued', stop_reason, detail, due)
    return 'retried'
  end
  local message = string.format('attempt %d of %d lost: %s', e.att, e.ma, detail)
  if e.err and e.err ~= '' then message = message .. '; before that: ' .. e.err end
  if #message > 4096 then message = string.sub(message, 1, 4080) .. '… [truncated]' end
  finish(T, e, timers, now, 'dead', stop_reason, 'attempts_exhausted', message, due, ctx)
  return 'dead'
end
