-- Helpers of the worker tier scripts, prepended after _lib.lua and _watchdog.lua.
-- A worker's remediation state lives in its registry hash (the workers hash tag):
--   tr tier reached (0 none, 1 cooperative, 2 terminate, 3 kill and restart)
--   tat when that tier was entered (ms)      tvd the verdict that escalated it
--   req what the worker's heartbeat reply asks for: '' | restart | drain
--   act the current tier's action: '' | pending | ok | failed    aid its id
--   adt the action's last outcome, in words  done when an action succeeded (ms)
--   t3f consecutive failed tier-3 actions    t3w when the first of them failed (ms)
--   cb  circuit: '' | open    cbat when it opened (ms)    cbr why
-- Tier changes go to the workers' event stream as "<worker>|<from>|<to>|<reason>|<actor>|
-- <detail>" (src/ledger/tiers.rs reads them).

local TIER_FIELDS = { 'reg', 'seen', 'ver', 'tr', 'tat', 'act', 'aid', 'done', 't3f', 't3w',
  'cb', 'id' }

-- The worker's tier state; nil when it is not registered.
local function load_tier(key)
  local v = redis.call('HMGET', key, unpack(TIER_FIELDS))
  if not v[1] then return nil end
  return { seen = tonumber(v[2]) or 0, ver = v[3] or '', tr = tonumber(v[4]) or 0,
    tat = tonumber(v[5]) or 0, act = v[6] or '', aid = v[7] or '', done = tonumber(v[8]),
    t3f = tonumber(v[9]) or 0, t3w = tonumber(v[10]), cb = v[11] or '', id = v[12] or '' }
end

local function emit_tier(stream, maxlen, worker, from, to, reason, detail)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', worker .. '|' .. from .. '|'
    .. to .. '|' .. reason .. '|' .. (ACTOR or '') .. '|' .. (detail or ''))
end
