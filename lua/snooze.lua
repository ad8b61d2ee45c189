-- snooze: the current attempt ends and the execution goes back to the queue, claimable
-- from a given time (`after` ms from now, or `until` an instant), as a continuation: `fr`
-- and the snooze count `sn` each go up by one, so no attempt is counted against max
-- attempts. The slot is freed only if this attempt holds it; the deadline timer stays.
-- A snooze past the execution's max snoozes is a retryable failure instead (as fail.lua,
-- with a message naming the limit); a snooze after cancellation was requested ends it as
-- cancelled.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'failed' list, 11 queue pending zset,
--       12 queue 'cancelled' list
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 'after'|'until', 5 the
--       delay or the instant (ms), 6 reason (free text), 7 longest snooze (ms), 8 events
--       max length, 9 history cap, 10 default max snoozes (an execution stored before
--       max snoozes existed has none)
-- Reply: {'ok', available_at_ms, snoozes, slot_released}
--        {'limit', then fail.lua's reply: 'retry', available_at_ms, slot_released |
--         'failed', slot_released}
--        {'cancelled', slot_released}
--        {'bad_time', now_ms} (until not after now, or past the longest snooze: nothing
--        written)
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} | {'missing'} | {'bad_arg', name}
-- Prelude: _lib.lua, _fail.lua

local value, longest = uint(ARGV[5]), uint(ARGV[7])
local maxlen, cap, default_max = ARGV[8], uint(ARGV[9]), uint(ARGV[10])
if not uint(maxlen) or not cap or not default_max or not longest then
  return { 'bad_arg', 'limits' }
end
if not value or (ARGV[4] ~= 'after' and ARGV[4] ~= 'until') then
  return { 'bad_arg', 'time' }
end
local v = redis.call('HMGET', KEYS[1], 'st', 'att', 'tok', 'sr', 'cx', 'hn', 'q', 'id',
  'ma', 'bb', 'bm', 'fr', 'msz', 'sn', 'cxr')
local verdict = token_verdict(v[1], v[2], v[3], v[4], ARGV[2], ARGV[3])
if verdict then return verdict end

local now = now_str()
local now_n = tonumber(now)
local at = value
if ARGV[4] == 'after' then at = now_n + value end
if at <= now_n or at - now_n > longest then return { 'bad_time', now } end

local e = { st = v[1], att = v[2], cx = v[5], hn = v[6], q = v[7], id = v[8], ma = v[9],
  bb = v[10], bm = v[11], fr = v[12], cxr = v[15] }
local k = { exec = KEYS[1], events = KEYS[2], slots = KEYS[3], start = KEYS[4],
  heartbeat = KEYS[5], progress = KEYS[6], deadline = KEYS[7], stuck = KEYS[8],
  cancel = KEYS[9], failed = KEYS[10], pending = KEYS[11], cancelled = KEYS[12] }
local member, reason = ARGV[1], ARGV[6]
local snoozes, max_snoozes = tonumber(v[14]) or 0, tonumber(v[13]) or default_max

if e.cx and e.cx ~= '' then
  return fail_attempt(k, e, member, true, 'snoozed after cancellation was requested: '
    .. reason, 0, 'snoozed_after_cancel', maxlen, cap, now)
end
if snoozes >= max_snoozes then
  local message = string.format('snooze limit reached: %d snoozes of max_snoozes %d; '
    .. 'this snooze (%s) fails the attempt', snoozes, max_snoozes, reason)
  local failed = fail_attempt(k, e, member, true, message, 0, 'snoozed_after_cancel',
    maxlen, cap, now)
  return { 'limit', unpack(failed) }
end

-- UTC ISO 8601 of an instant in ms (days to civil date: Howard Hinnant's algorithm), so
-- the event says when in words a person reads.
local function iso(ms)
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

local released = release_slot(k.slots, e.id, e.att)
drop_active_timers(k, member, e.st, false)
local at_s = string.format('%d', at)
local n = snoozes + 1
redis.call('HSET', k.exec, 'st', 'queued', 'tok', '', 'wk', '', 'ss', '', 'sk', '',
  'sn', tostring(n), 'fr', tostring((tonumber(e.fr) or 0) + 1),
  hist_push(e.hn, now, 'queued', 'snoozed', e.att, cap))
redis.call('ZADD', k.pending, at_s, e.id)
emit(k.events, maxlen, e.q, e.id, e.att, e.st, 'queued', 'snoozed', string.format(
  'until %s (snooze %d of %d): %s', iso(at), n, max_snoozes, reason))
return { 'ok', at_s, tostring(n), released }
