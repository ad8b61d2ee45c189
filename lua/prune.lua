-- prune: remove the partition's finished executions past their retention, oldest first,
-- at most `batch` of them. A queue's terminal lists are in finish order, and each state
-- has one time to live per queue, so each list is pruned from its head and the scan stops
-- at the first execution still kept: O(batch), whatever the number of finished ones.
-- Past the queue's cap of finished executions the oldest go too, expired or not.
-- Pruning deletes the execution hash, its list entry, its own retries zset and its entry
-- in the retries zset of the execution it retried; nothing else. A pinned execution is
-- never deleted: at the head of a list past its retention it moves to that list's
-- ":kept" list (in the same finish order), so it no longer blocks the ones behind it.
-- Fenced by the caller's lease.
-- KEYS: 1 lease hash, 2 events stream, 3 watch-state hash (totals), 4 partition
--       queue-name set
-- ARGV: 1 owner, 2 epoch, 3 events max length, 4 batch, 5-9 the partition's key layout
--       (see _watchdog.lua), 10 queue settings suffix, 11 retries zset prefix,
--       12-16 the ledger's time to live in ms of succeeded, cancelled, failed, dead,
--       timed_out (0: kept for ever), 17 the ledger's cap per queue (0: none)
-- Reply: {'lease_lost'} | {'ok', pruned, moved to kept, more (0/1), pruned succeeded,
--        cancelled, failed, dead, timed_out}
-- Prelude: _lib.lua, _watchdog.lua

local STATES = { 'succeeded', 'cancelled', 'failed', 'dead', 'timed_out' }
local maxlen, batch = uint(ARGV[3]), uint(ARGV[4])
local K = layout_from(ARGV, 5)
local conf_suffix, retries_prefix = ARGV[10], ARGV[11]
if not maxlen or not batch or not K or not conf_suffix or not retries_prefix then
  return { 'bad_arg', 'args' }
end
local defaults = {}
for i, state in ipairs(STATES) do
  defaults[state] = uint(ARGV[11 + i])
  if not defaults[state] then return { 'bad_arg', 'retention' } end
end
local default_cap = uint(ARGV[17])
if not default_cap then return { 'bad_arg', 'cap' } end
local now = now_ms()
if not lease_current(KEYS[1], ARGV[1], ARGV[2], now) then return { 'lease_lost' } end

local budget = batch
local n = { pruned = 0, kept = 0, succeeded = 0, cancelled = 0, failed = 0, dead = 0,
  timed_out = 0 }

-- Removes the head of `list` (execution `id` of queue `q`, in `state`): deleted, or moved
-- to the kept list when pinned.
local function take_head(q, state, list, id, pinned, rof)
  redis.call('LPOP', list)
  budget = budget - 1
  if pinned then
    redis.call('RPUSH', list .. ':kept', id)
    redis.call('HSET', K.exec .. q .. '/' .. id, 'kept', '1')
    n.kept = n.kept + 1
    return
  end
  redis.call('DEL', K.exec .. q .. '/' .. id, retries_prefix .. q .. '/' .. id)
  if rof and rof ~= '' then redis.call('ZREM', retries_prefix .. rof, id) end
  n.pruned = n.pruned + 1
  n[state] = n[state] + 1
end

-- The head of `list`: id, finish time, pinned, retry_of; nil when empty. A listed id whose
-- hash is gone (it cannot happen through the scripts; a hand-deleted key) is dropped.
local function head(list, q)
  while true do
    local id = redis.call('LINDEX', list, 0)
    if not id then return nil end
    local f = redis.call('HMGET', K.exec .. q .. '/' .. id, 'fin', 'pin', 'rof')
    if f[1] then return id, tonumber(f[1]) or 0, f[2] == '1', f[3] end
    redis.call('LPOP', list)
  end
end

for _, q in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if budget <= 0 then break end
  local fields = { 'keep_max' }
  for _, state in ipairs(STATES) do fields[#fields + 1] = 'keep_' .. state end
  local conf = redis.call('HMGET', K.queue .. q .. conf_suffix, unpack(fields))
  local cap = tonumber(conf[1]) or default_cap
  -- Time to live: the oldest of each list first, while expired.
  for i, state in ipairs(STATES) do
    local ttl = tonumber(conf[1 + i]) or defaults[state]
    local list = finished_key(K, q, state)
    while ttl > 0 and budget > 0 do
      local id, fin, pinned, rof = head(list, q)
      if not id or fin + ttl > now then break end
      take_head(q, state, list, id, pinned, rof)
    end
  end
  -- The cap: the oldest across the states, while over it.
  if cap > 0 then
    local total = 0
    for _, state in ipairs(STATES) do
      total = total + redis.call('LLEN', finished_key(K, q, state))
    end
    while total > cap and budget > 0 do
      local oldest, at
      for _, state in ipairs(STATES) do
        local list = finished_key(K, q, state)
        local id, fin, pinned, rof = head(list, q)
        if id and (not at or fin < at[2]) then
          oldest, at = state, { id, fin, pinned, rof, list }
        end
      end
      if not oldest then break end
      take_head(q, oldest, at[5], at[1], at[3], at[4])
      total = total - 1
    end
  end
end

if n.pruned > 0 then
  redis.call('HINCRBY', KEYS[3], 'n_pruned', n.pruned)
  local parts = {}
  for _, state in ipairs(STATES) do
    if n[state] > 0 then parts[#parts + 1] = state .. ' ' .. n[state] end
  end
  emit(KEYS[2], maxlen, '', '', 0, '', '', 'pruned', string.format(
    'removed %d finished executions past their retention (%s)', n.pruned,
    table.concat(parts, ', ')))
end
return { 'ok', n.pruned, n.kept, budget <= 0 and 1 or 0, n.succeeded, n.cancelled, n.failed,
  n.dead, n.timed_out }
