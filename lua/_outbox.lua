-- The hook outbox, prepended after _lib.lua (and _tiers.lua where a script needs both).
-- Every key is in the workers' hash tag, so a tier change and the hook calls it owes are
-- written by one script. A call is a hash `<prefix><key>` (idempotency key):
--   hk hook name   body event JSON   st pending | running | ok | failed
--   att deliveries started   tok the current claim's token   wk worker (tier actions)
--   aid the tier action it carries out   out its outcome, in words   cr created (ms)
--   term for an execution's terminate call: "<partition>|<queue>/<id>|<attempt>|<n>|<base
--        key>" (its outcome is handed to that partition's holder: see hook_complete.lua)
-- Pending keys wait in a list; claimed ones in a zset scored by when their claim lapses;
-- settled ones in a zset scored by when they were settled, until their retention ends
-- (hook_claim.lua removes them): a key enqueued again meanwhile is not called again.

-- Adds a call unless one with that key exists (or existed within the retention): the
-- key makes it idempotent. Returns 1 when added.
local function outbox_add(pending, prefix, key, hook, body, worker, aid, now, term)
  local call = prefix .. key
  if redis.call('HGET', call, 'st') then return 0 end
  redis.call('HSET', call, 'hk', hook, 'body', body, 'st', 'pending', 'att', 0,
    'wk', worker or '', 'aid', aid or '', 'cr', now, 'term', term or '')
  redis.call('RPUSH', pending, key)
  return 1
end
