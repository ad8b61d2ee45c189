-- resource_release: frees the units of one execution, fenced by its attempt
-- (release-if-matches): an explicit release, the release that follows an attempt's end,
-- the watchdog's sweep and an operator's force-release all run here. 'exact' frees only a
-- unit held by exactly the given attempt, so a stale holder's release never frees the
-- unit of the attempt after it; 'expired' frees it only when, besides, its ttl has passed
-- (Redis time, read here: a refresh since the sweep read it keeps it); 'any' frees
-- whatever attempt holds it (force-release). Idempotent: a unit already freed is not
-- found and nothing happens. A resource with no holder left is deleted.
-- KEYS: 1 the execution's resources set, 2 names set, 3 holders zset of the execution's
--       partition
-- ARGV: 1 resource hash prefix, 2 member "<queue>/<id>", 3 attempt ('' with 'any'),
--       4 'exact'|'expired'|'any', 5 resource name ('' = every resource the execution
--       holds)
-- Reply: {'ok', freed_count, then per unit freed: resource, attempt, since_ms}
--        {'bad_arg', name}
-- Prelude: _lib.lua

local prefix, member, mode = ARGV[1], ARGV[2], ARGV[4]
local attempt = uint(ARGV[3])
if mode ~= 'exact' and mode ~= 'expired' and mode ~= 'any' then
  return { 'bad_arg', 'mode' }
end
if mode ~= 'any' and not attempt then return { 'bad_arg', 'attempt' } end

local names = { ARGV[5] }
if ARGV[5] == '' then names = redis.call('SMEMBERS', KEYS[1]) end
local now = nil
if mode == 'expired' then now = now_ms() end

local reply = { 'ok', '0' }
local freed = 0
for _, resource in ipairs(names) do
  local key = prefix .. resource
  local v = redis.call('HGET', key, member)
  if v then
    local a, since, exp = string.match(v, '^(%d+)|(%d+)|(%d+)|')
    local matches = mode == 'any' or tonumber(a) == attempt
    if matches and mode == 'expired' then
      matches = tonumber(exp) > 0 and tonumber(exp) <= now
    end
    if matches then
      redis.call('HDEL', key, member)
      redis.call('ZREM', KEYS[3], resource .. '|' .. member .. '|' .. a)
      redis.call('SREM', KEYS[1], resource)
      if redis.call('HLEN', key) <= 1 then
        redis.call('DEL', key)
        redis.call('SREM', KEYS[2], resource)
      end
      freed = freed + 1
      reply[#reply + 1] = resource
      reply[#reply + 1] = a
      reply[#reply + 1] = since
    end
  else
    redis.call('SREM', KEYS[1], resource)
  end
end
reply[2] = tostring(freed)
return reply
