-- Helpers of the watchdog scripts, prepended after _lib.lua.
-- Watchdog scripts act on many queues of one partition, so besides KEYS they derive the
-- keys of an execution and of its queue from the partition's layout, which the caller
-- passes in ARGV as src/keys.rs builds it (`Keyspace::script_layout`): the execution
-- prefix (prefix .. "<queue>/<id>"), the queue prefix (prefix .. queue .. suffix), and
-- the suffixes of the slots hash, the pending zset and the terminal lists. Every key
-- shares the partition's tag, so each script still touches a single Cluster slot.

-- The layout from ARGV[i .. i+4]; nil when a piece is missing.
local function layout_from(args, i)
  for j = i, i + 4 do
    if not args[j] or args[j] == '' then return nil end
  end
  return { exec = args[i], queue = args[i + 1], slots = args[i + 2], pending = args[i + 3],
    finished = args[i + 4] }
end
local function slots_key(K, q) return K.queue .. q .. K.slots end
local function pending_key(K, q) return K.queue .. q .. K.pending end
local function finished_key(K, q, state) return K.queue .. q .. K.finished .. state end

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

-- What a judgement reads of an execution: the numbers it needs, then the rest.
local NUMBER_FIELDS = { 'att', 'dla' }
-- All but max snoozes, which no judgement reads, and max repeats, read as optional: an
-- execution enqueued before either existed does not have it.
for _, f in ipairs(TIMING_FIELDS) do
  if f ~= 'msz' and f ~= 'mr' then NUMBER_FIELDS[#NUMBER_FIELDS + 1] = f end
end
local EXEC_FIELDS = { 'st', 'dsp', 'hb', 'prc', 'ss', 'sk', 'cx', 'wk', 'hn', 'q', 'id',
  'err', 'sd', 'tm', 'fr', 'wdl', 'wst', 'wr', 'wx', 'mr', 'fpn', 'cxr' }
for _, f in ipairs(NUMBER_FIELDS) do EXEC_FIELDS[#EXEC_FIELDS + 1] = f end

-- Loads an execution for judgement; nil when absent, false when a field it needs is
-- damaged (never raise mid-script: Redis does not roll back the writes already made).
local function load_exec(K, member)
  local key = K.exec .. member
  local v = redis.call('HMGET', key, unpack(EXEC_FIELDS))
  if not v[1] then return nil end
  local e = { key = key, member = member }
  for i, name in ipairs(EXEC_FIELDS) do e[name] = v[i] end
  for _, name in ipairs(NUMBER_FIELDS) do
    e[name] = tonumber(e[name])
    if e[name] == nil then return false end
  end
  for _, name in ipairs({ 'dsp', 'hb', 'prc', 'ss', 'cx', 'tm', 'wdl', 'wst', 'mr', 'fpn' }) do
    e[name] = tonumber(e[name]) -- nil when unset
  end
  if not e.q or not e.id then return false end
  return e
end

-- Tracing (docs/tracing.md): when the caller asks for it, every event the script emits
-- about an execution is also listed in TRACED as
-- "queue|id|attempt|from|to|reason|stop_reason|traceparent|detail", for the reply, so the
-- replica makes one span per action. Off (the default), emit is left as it is.
local TRACED = {}
local function trace_actions(K)
  local plain = emit
  emit = function(stream, maxlen, queue, id, attempt, from, to, reason, detail, due)
    plain(stream, maxlen, queue, id, attempt, from, to, reason, detail, due)
    if id ~= '' then
      local x = redis.call('HMGET', K.exec .. queue .. '/' .. id, 'tp', 'sr')
      TRACED[#TRACED + 1] = table.concat({ queue, id, tostring(attempt), from, to, reason,
        x[2] or '', x[1] or '', detail or '' }, '|')
    end
  end
end

local ACTIVE = { dispatched = true, running = true, stuck = true }

-- timers = { deadline, start, heartbeat, progress, stuck, cancel[, wait] } keys of the
-- partition (only the round passes the wait timer: no other watchdog script acts on an
-- awaiting execution).
local function leave_active(K, e, timers)
  local released = 0
  if ACTIVE[e.st] then
    released = release_slot(slots_key(K, e.q), e.id, e.att)
  end
  drop_active_timers(timers, e.member, e.st, e.cx ~= nil)
  return released
end

-- A terminal verdict by the watchdog (timed_out, cancelled, dead).
local function finish(K, e, timers, now, to, stop_reason, reason, detail, due, ctx)
  leave_active(K, e, timers)
  if e.st == 'queued' then redis.call('ZREM', pending_key(K, e.q), e.id) end
  if e.st == 'awaiting' and timers.wait then redis.call('ZREM', timers.wait, e.member) end
  redis.call('ZREM', timers.deadline, e.member)
  become_terminal({ key = e.key, list = finished_key(K, e.q, to), events = ctx.events,
    maxlen = ctx.maxlen, cap = ctx.hist_cap, queue = e.q, id = e.id, att = e.att,
    from = e.st, hn = e.hn }, now, to, stop_reason, reason, detail, nil, due)
end

-- The attempt was lost (never started, stuck past its threshold, orphaned): retry it as a
-- new attempt after its backoff if attempts remain, else dead with a message that names
-- the latest failure. A lost attempt whose cancellation was requested ends cancelled.
-- Returns 'retried', 'dead' or 'cancelled'.
local function retry_or_dead(K, e, timers, now, stop_reason, detail, due, ctx)
  if e.cx then
    finish(K, e, timers, now, 'cancelled', cancel_stop(e.cxr), stop_reason, detail, due,
      ctx)
    return 'cancelled'
  end
  local counted = counted_attempts(e.att, e.fr)
  if counted < e.ma then
    leave_active(K, e, timers)
    local delay = e.bb * (2 ^ (counted - 1))
    if delay > e.bm then delay = e.bm end
    redis.call('HSET', e.key, 'st', 'queued', 'tok', '', 'wk', '', 'ss', '', 'sk', '',
      'err', detail, hist_push(e.hn, now, 'queued', stop_reason, e.att, ctx.hist_cap))
    redis.call('ZADD', pending_key(K, e.q), now + math.floor(delay), e.id)
    emit(ctx.events, ctx.maxlen, e.q, e.id, e.att, e.st, 'queued', stop_reason, detail, due)
    return 'retried'
  end
  local message = string.format('attempt %d of %d lost: %s', counted, e.ma, detail)
  if e.err and e.err ~= '' then message = message .. '; before that: ' .. e.err end
  if #message > 4096 then message = string.sub(message, 1, 4080) .. '… [truncated]' end
  finish(K, e, timers, now, 'dead', stop_reason, 'attempts_exhausted', message, due, ctx)
  return 'dead'
end

-- Adds a pass's counts to the partition's running totals in its watch-state hash (read by
-- the watchdog status: what every replica did, surviving restarts). Only non-zero ones.
local function add_totals(watch, n)
  for _, name in ipairs({ 'timed_out', 'stuck', 'retried', 'dead', 'cancelled', 'orphaned',
    'wait_expired' }) do
    if (n[name] or 0) > 0 then redis.call('HINCRBY', watch, 'n_' .. name, n[name]) end
  end
end
