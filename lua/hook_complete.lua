-- hook_complete: the outcome of one delivered hook call, under the claim that delivered it
-- (a lapsed claim's late report is refused: the call was handed to another replica). The
-- outcome is an event; a call that carries a worker's tier action (terminate, kill) also
-- settles that action, once (see worker_outcome.lua). The call hash is kept (in the
-- settled zset) for the outbox's retention, so the same key enqueued again within it is
-- not called twice. The outcome of an execution's terminate call goes to its partition's
-- terminate zset, for the partition's holder to act on under its lease (timed out on
-- success; another call after a backoff on failure -- 200ms, doubling up to a minute --
-- the slot kept meanwhile): member
-- "<ok|failed>|<n>|<attempt>|<hook>|<base key>|<queue>/<id>", scored by when to act.
-- KEYS: 1 running zset, 2 workers events stream, 3 settled zset
-- ARGV: 1 call key prefix, 2 key, 3 token, 4 ok | failed, 5 detail, 6 events max length,
--       7 actor (replica), 8 worker hash prefix, 9 terminate zset prefix (.. partition)
-- Reply: {'ok'} | {'stale'}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua, _outbox.lua

local maxlen = uint(ARGV[6])
if not maxlen or (ARGV[4] ~= 'ok' and ARGV[4] ~= 'failed') then
  return { 'bad_arg', 'args' }
end
local call = ARGV[1] .. ARGV[2]
local c = redis.call('HMGET', call, 'st', 'tok', 'hk', 'wk', 'aid', 'att', 'term')
if c[1] ~= 'running' or c[2] ~= ARGV[3] then return { 'stale' } end
local now = now_ms()
ACTOR = ARGV[7]
redis.call('HSET', call, 'st', ARGV[4], 'out', ARGV[5], 'fin', now, 'tok', '')
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
local ok = ARGV[4] == 'ok'
local worker, tier = c[4] or '', 0
local w = nil
if worker ~= '' then w = load_tier(ARGV[8] .. worker) end
if w then tier = w.tr end
emit_tier(KEYS[2], maxlen, worker, tier, tier, ok and 'hook_succeeded' or 'hook_failed',
  string.format('%s (key %s, delivery %s): %s', c[3], ARGV[2], c[6], ARGV[5]))
-- An execution's terminate call: hand the outcome to the partition's holder.
local p, member, att, nth, base = string.match(c[7] or '',
  '^(%d+)|([^|]+)|(%d+)|(%d+)|(.+)$')
if p then
  local at = now
  if not ok then at = now + math.min(200 * 2 ^ (tonumber(nth) - 1), 60000) end
  redis.call('ZADD', ARGV[9] .. p, at, table.concat({ ARGV[4], nth, att, c[3], base, member },
    '|'))
end
-- The tier action it carried out, if that is still the worker's current one.
if w and c[5] ~= '' and w.aid == c[5] and w.act == 'pending' then
  if ok then
    redis.call('HSET', ARGV[8] .. worker, 'act', 'ok', 'adt', ARGV[5], 'done', now)
    emit_tier(KEYS[2], maxlen, worker, tier, tier, 'action_succeeded', c[3] .. ': ' .. ARGV[5])
  else
    redis.call('HSET', ARGV[8] .. worker, 'act', 'failed', 'adt', ARGV[5])
    emit_tier(KEYS[2], maxlen, worker, tier, tier, 'action_failed', c[3] .. ': ' .. ARGV[5])
  end
end
return { 'ok' }
