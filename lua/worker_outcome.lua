-- worker_outcome: the outcome of a tier's terminate or kill action (a hook, or a signal
-- to a local supervisor). Only the action it names counts, and only once: a late or
-- repeated report of an earlier action changes nothing. A success means the process is
-- gone (`done`); the worker is not judged again unless it beats again.
-- KEYS: 1 worker hash, 2 workers events stream
-- ARGV: 1 events max length, 2 action id, 3 ok | failed, 4 detail, 5 actor
-- Reply: {'ok', tier} | {'stale'} | {'gone'}
-- Prelude: _lib.lua, _watchdog.lua, _tiers.lua

local maxlen = uint(ARGV[1])
if not maxlen or (ARGV[3] ~= 'ok' and ARGV[3] ~= 'failed') then return { 'bad_arg', 'args' } end
local w = load_tier(KEYS[1])
if not w then return { 'gone' } end
if w.aid ~= ARGV[2] or w.act ~= 'pending' then return { 'stale' } end
local now = now_ms()
ACTOR = ARGV[5]
if ARGV[3] == 'ok' then
  redis.call('HSET', KEYS[1], 'act', 'ok', 'adt', ARGV[4], 'done', now)
  emit_tier(KEYS[2], maxlen, w.id, w.tr, w.tr, 'action_succeeded', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'act', 'failed', 'adt', ARGV[4])
  emit_tier(KEYS[2], maxlen, w.id, w.tr, w.tr, 'action_failed', ARGV[4])
end
return { 'ok', w.tr }
