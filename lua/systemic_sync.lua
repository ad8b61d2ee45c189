-- systemic_sync: the namespace-wide half of the systemic hold. Each replica publishes, for
-- the partitions it holds, the recent heartbeat verdicts (see lua/round.lua) and the
-- running executions, as its rounds reported them; the
-- script sums every fresh entry over the namespace and, when more than `share` per mille
-- of that population went stale and the population is at least `min_running`, starts a
-- namespace hold of `grace_ms`. Replicas pass the hold to their rounds, and every
-- partition adopts it (lua/round.lua). This catches an outage spread over partitions
-- that each stay below `min_running` (a worker fleet serving many queues).
-- The partition entries live in another hash tag than the partitions themselves, so this
-- is a hint to hold back, never a reason to act: the round scripts still judge alone.
-- Entries older than `max_age_ms` (a replica that died) or written before the last
-- namespace hold ended (that hold consumed them) are not counted.
-- KEYS: 1 namespace systemic hash (fields `p:<partition>` = "<stale>|<running>|<at ms>",
--       hold_until, hold_start, hold_reason, holds)
-- ARGV: 1 max_age_ms, 2 share (per mille), 3 min running, 4 grace_ms,
--       then pairs: partition, "<stale>|<running>"
-- Reply: {'ok', stale, population, partitions counted, hold_until (0: none),
--         hold_start, hold_reason}
-- Prelude: _lib.lua

local max_age, share, min_running, grace = uint(ARGV[1]), uint(ARGV[2]), uint(ARGV[3]),
  uint(ARGV[4])
if not max_age or not share or not min_running or not grace or (#ARGV - 4) % 2 ~= 0 then
  return { 'bad_arg', 'args' }
end
for i = 5, #ARGV, 2 do
  if not uint(ARGV[i]) or not string.find(ARGV[i + 1], '^%d+|%d+$') then
    return { 'bad_arg', 'partition' }
  end
end

local now = now_ms()
local h = redis.call('HMGET', KEYS[1], 'hold_until', 'hold_start', 'hold_reason')
local hold_until, hold_start, reason = tonumber(h[1]) or 0, tonumber(h[2]) or 0, h[3] or ''

for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 'p:' .. ARGV[i], ARGV[i + 1] .. '|' .. now)
end

local stale, population, counted = 0, 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'p:' then
    local s, r, at = string.match(all[i + 1], '^(%d+)|(%d+)|(%d+)$')
    at = tonumber(at)
    if at and at >= now - max_age and at > hold_until then
      stale = stale + tonumber(s)
      population = population + tonumber(s) + tonumber(r)
      counted = counted + 1
    elseif at and at < now - 10 * max_age then
      redis.call('HDEL', KEYS[1], all[i]) -- a partition nobody publishes any more
    end
  end
end

if now >= hold_until and population >= min_running and stale * 1000 > share * population then
  hold_until, hold_start = now + grace, now
  reason = string.format('%d of %d running executions across %d partitions went stale '
    .. 'within two heartbeat timeouts (threshold %d/1000)', stale, population, counted, share)
  redis.call('HSET', KEYS[1], 'hold_until', hold_until, 'hold_start', hold_start,
    'hold_reason', reason)
  redis.call('HINCRBY', KEYS[1], 'holds', 1)
end
if hold_until <= now then hold_until, hold_start, reason = 0, 0, '' end
return { 'ok', stale, population, counted, hold_until, hold_start, reason }
