-- resource_acquire: one unit of a named resource for one attempt of one execution
-- (resource leases; the watchdog replicas' partition leases are lease.lua). A resource
-- exists while held: its hash holds the capacity ('cap') and one field per holder. The
-- first acquire (no holder) sets the capacity (the one given, else 1); a later acquire
-- naming a different capacity while units are held is refused, nothing written. Units
-- past their ttl count as free and are removed here. An execution holds at most one unit
-- of a resource: the same attempt acquiring again refreshes its ttl; a later attempt of
-- the same execution takes over the unit of an earlier one (the caller checked its token
-- is current, so the earlier attempt is over). The token itself is checked by the caller
-- on the execution's partition (another hash tag).
-- KEYS: 1 resource hash, 2 names set, 3 the execution's resources set, 4 holders zset of
--       the execution's partition
-- ARGV: 1 resource name, 2 member "<queue>/<id>", 3 attempt, 4 capacity ('' = as set,
--       else 1), 5 ttl ms ('0' = none), 6 partition, 7 holders zset prefix, 8 the
--       executions' resources set prefix
-- Reply: {'ok', capacity, held, expires_ms ('0': none), 'new'|'again'|'took_over',
--         expired_count}
--        {'busy', capacity, held, then per holder: member, attempt, since_ms,
--         expires_ms} (nothing written but units past their ttl removed)
--        {'capacity', capacity, held} (a different capacity while held: nothing written)
--        {'newer', attempt} (a later attempt of this execution holds it: nothing written)
--        {'bad_arg', name}
-- Prelude: _lib.lua

local resource, member = ARGV[1], ARGV[2]
local attempt, ttl, partition = uint(ARGV[3]), uint(ARGV[5]), ARGV[6]
local want_cap = nil
if ARGV[4] ~= '' then
  want_cap = uint(ARGV[4])
  if not want_cap or want_cap < 1 then return { 'bad_arg', 'capacity' } end
end
if not attempt or attempt < 1 then return { 'bad_arg', 'attempt' } end
if not ttl then return { 'bad_arg', 'ttl' } end
if not uint(partition) then return { 'bad_arg', 'partition' } end

local now = now_ms()
local flat = redis.call('HGETALL', KEYS[1])
local cap = nil
local live, expired = {}, {}
local mine = nil
for i = 1, #flat, 2 do
  local f, v = flat[i], flat[i + 1]
  if f == 'cap' then
    cap = tonumber(v)
  else
    local a, since, exp, p = string.match(v, '^(%d+)|(%d+)|(%d+)|(%d+)$')
    local h = { member = f, att = a, since = since, exp = exp, p = p }
    if f == member then
      mine = h
    elseif tonumber(exp) > 0 and tonumber(exp) <= now then
      expired[#expired + 1] = h
    else
      live[#live + 1] = h
    end
  end
end

if mine and tonumber(mine.att) > attempt then return { 'newer', mine.att } end
local held_by_others = #live
if held_by_others == 0 then
  cap = want_cap or cap or 1
elseif want_cap and cap and want_cap ~= cap then
  return { 'capacity', tostring(cap), tostring(held_by_others + (mine and 1 or 0)) }
end
cap = cap or want_cap or 1

-- Units past their ttl are free: removed whatever this call's outcome.
for _, h in ipairs(expired) do
  redis.call('HDEL', KEYS[1], h.member)
  redis.call('ZREM', ARGV[7] .. h.p, resource .. '|' .. h.member .. '|' .. h.att)
  redis.call('SREM', ARGV[8] .. h.member, resource)
end

if not mine and held_by_others >= cap then
  local reply = { 'busy', tostring(cap), tostring(held_by_others) }
  for _, h in ipairs(live) do
    reply[#reply + 1] = h.member
    reply[#reply + 1] = h.att
    reply[#reply + 1] = h.since
    reply[#reply + 1] = h.exp
  end
  return reply
end

local how = 'new'
local since = tostring(now)
if mine then
  if tonumber(mine.att) == attempt then
    how = 'again'
    since = mine.since
  else
    how = 'took_over'
    redis.call('ZREM', KEYS[4], resource .. '|' .. member .. '|' .. mine.att)
  end
end
local exp = '0'
local score = '+inf'
if ttl > 0 then
  exp = tostring(now + ttl)
  score = exp
end
redis.call('HSET', KEYS[1], 'cap', tostring(cap), member,
  attempt .. '|' .. since .. '|' .. exp .. '|' .. partition)
redis.call('SADD', KEYS[2], resource)
redis.call('SADD', KEYS[3], resource)
redis.call('ZADD', KEYS[4], score, resource .. '|' .. member .. '|' .. attempt)
return { 'ok', tostring(cap), tostring(held_by_others + 1), exp, how, tostring(#expired) }
