-- resource_free_ended: after attempts ended (a batch of completions, or one fail, snooze,
-- await or acknowledged cancel), frees every unit those attempts still hold, fenced by
-- (execution, attempt) as in resource_release.lua: a unit a later attempt holds is never
-- touched. One call for a whole batch; when no resource is held at all it reads one key.
-- KEYS: 1 names set
-- ARGV: 1 resource hash prefix, 2 the executions' resources set prefix, 3 holders zset
--       prefix, then per ended attempt: member "<queue>/<id>", attempt, partition
-- Reply: {'ok', freed_count, then per unit freed: member, resource, attempt, since_ms}
--        {'bad_arg', name}
-- Prelude: _lib.lua

if (#ARGV - 3) % 3 ~= 0 then return { 'bad_arg', 'items' } end
if redis.call('SCARD', KEYS[1]) == 0 then return { 'ok', '0' } end
local prefix, of_prefix, held_prefix = ARGV[1], ARGV[2], ARGV[3]
local reply = { 'ok', '0' }
local freed = 0
for i = 4, #ARGV, 3 do
  local member, attempt, partition = ARGV[i], uint(ARGV[i + 1]), ARGV[i + 2]
  if not attempt or not uint(partition) then return { 'bad_arg', 'attempt' } end
end
for i = 4, #ARGV, 3 do
  local member, attempt, partition = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local of = of_prefix .. member
  for _, resource in ipairs(redis.call('SMEMBERS', of)) do
    local key = prefix .. resource
    local v = redis.call('HGET', key, member)
    if v then
      local a, since = string.match(v, '^(%d+)|(%d+)|')
      if tonumber(a) == attempt then
        redis.call('HDEL', key, member)
        redis.call('ZREM', held_prefix .. partition, resource .. '|' .. member .. '|' .. a)
        redis.call('SREM', of, resource)
        if redis.call('HLEN', key) <= 1 then
          redis.call('DEL', key)
          redis.call('SREM', KEYS[1], resource)
        end
        freed = freed + 1
        reply[#reply + 1] = member
        reply[#reply + 1] = resource
        reply[#reply + 1] = a
        reply[#reply + 1] = since
      end
    else
      redis.call('SREM', of, resource)
    end
  end
end
reply[2] = tostring(freed)
return reply
