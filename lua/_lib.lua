-- Shared helpers, prepended to every script by src/scripts.rs.
-- Conventions used by all scripts:
--   * Redis TIME, read once per script through now_ms() or now_str() (lua/_clock.lua), is the only clock.
--   * Timer index members are "<queue>/<id>"; slot and pending members are "<id>".
--   * Scripts validate everything first, then write; replies are flat arrays whose first
--     element is a status word the Rust side turns into a typed result.
--   * Keys come from src/keys.rs, in KEYS or as prefixes in ARGV; no script spells out
--     the key layout itself.
--
-- Execution hash fields (mirror of src/fields.rs; a test checks they agree):
--   q queue
--   id execution id
--   st state
--   att attempts started
--   pl payload (JSON)
--   cr created at (ms)
--   dla deadline instant (ms, 0: none)
--   tok current attempt's nonce
--   wk worker of the current attempt
--   dsp dispatched at (ms)
--   sta started at (ms)
--   hb last heartbeat (ms)
--   pr progress text
--   prc progress changed at (ms)
--   cp checkpoint (JSON)
--   ss stuck since (ms)
--   sk stuck kind: heartbeat | no_progress | looping
--   sd stuck verdict's detail
--   cx cancel requested at (ms)
--   tm terminate requested at (ms)
--   err latest failure or cancel reason
--   sr stop reason
--   fin finished at (ms)
--   res result (JSON)
--   fa false alarms
--   fr continuations: attempts not counted (absent: 0)
--   sn snoozes so far (absent: 0)
--   hn history entries written (absent: 1)
--   h<i> history entry i % cap: <n>|<ms>|<state>|<reason>|<attempt>
--   hist history lines of an earlier version (read only)
--   rof retry of (queue/id)
--   pin pinned: kept whatever the retention
--   kept in its terminal list's kept list
--   wr wait reason (while awaiting)
--   wst waiting since (ms)
--   wdl wait deadline instant (ms)
--   wx at the wait deadline: fail | requeue
--   rth hash of the current wait's resume token
--   rtu hash of the last used resume token
--   rsa resumed at (ms), for the last wait
--   ri resume input (JSON) for the continuation
--   fp last heartbeat fingerprint (this attempt)
--   fpn times in a row fp arrived (this attempt)
--   tp W3C traceparent of the enqueue
--   cxr cancel cause: budget_exceeded (absent: a cancel)
--   us usage totals: input|output|cached|cost
--   um:<model> usage of one model: input|output|cached|cost
--   usq last usage delta applied: <attempt>:<seq>
--   bg budget: tokens|cost|warning per mille (0: none)
--   bgw budget warning sent at (ms)
-- (end of glossary)
-- The timings, in the order scripts take them (src/timings.rs, STORED_FIELDS): start
-- grace, heartbeat timeout, no-progress timeout, deadline, stuck threshold, max attempts,
-- backoff base, backoff max, cancel grace, max snoozes, max repeats; milliseconds, or the
-- count.
local TIMING_FIELDS = { 'sg', 'ht', 'npt', 'dl', 'stt', 'ma', 'bb', 'bm', 'cg', 'msz', 'mr' }

-- Parse a non-negative integer argument; nil when absent or malformed.
local function uint(v)
  if not v or not string.find(v, '^%d+$') then return nil end
  return tonumber(v)
end

-- The history is a ring of `cap` fields in the execution hash: entry number n (from 0)
-- is field "h<n % cap>", "<n>|<ms>|<state>|<reason>|<attempt>", and "hn" counts the
-- entries written. Every value stays short (well under the 64 bytes of Redis's
-- hash-max-listpack-value), so the hash keeps its compact encoding however long it runs;
-- one text field that grew with each transition pushed a running execution out of it.
-- A new execution has its first entry, h0, and no "hn" (absent means 1: one field less
-- to write on every enqueue). Returns the four arguments HSET takes (field, entry, 'hn',
-- count): put the call last in an argument list or a table constructor, or wrap it in
-- { } and unpack it.
local function hist_push(hn, now, state, reason, attempt, cap)
  local n = tonumber(hn) or 1
  return 'h' .. (n % cap), n .. '|' .. now .. '|' .. state .. '|' .. reason .. '|' .. attempt,
    'hn', tostring(n + 1)
end

-- The first history entry of a new execution: the two arguments HSET takes.
local function hist_first(now, state, reason)
  return 'h0', '0|' .. now .. '|' .. state .. '|' .. reason .. '|0'
end

-- Who writes the events of this script: '' for workers and orchestrators, or
-- "<replica>@<epoch>" once a watchdog script has checked its lease (`lease_current`), so
-- every watchdog action names the replica that took it and the lease it held.
local ACTOR = ''

-- Append one transition to the partition's capped event stream, as the single field
-- e = "<queue>|<id>|<attempt>|<from>|<to>|<reason>|<due>|<actor>|<detail>": one argument
-- instead of eighteen, each of which Redis converts (about 1 µs per event saved). Names,
-- states, reasons, times and actors never hold '|'; the free-text detail comes last. `due`
-- is the instant the timer that caused a watchdog action fired ('' for other events):
-- detection lag is the event's own time minus `due`.
local function emit(stream, maxlen, queue, id, attempt, from, to, reason, detail, due)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', queue .. '|' .. id .. '|'
    .. attempt .. '|' .. from .. '|' .. to .. '|' .. reason .. '|' .. (due or '') .. '|'
    .. ACTOR .. '|' .. (detail or ''))
end

-- Attempts that count toward max attempts: those started (`att`) less the continuations
-- (`fr`: attempts that ended by an await or a snooze, which are not retries).
local function counted_attempts(att, fr)
  return tonumber(att) - (tonumber(fr) or 0)
end

local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true, dead = true }

-- A slot's holder is stored as "<attempt>:<worker>" (the worker lets reconciliation find
-- what a gone worker held without reading every execution).
local function holder_attempt(holder)
  if not holder then return nil end
  return tonumber(string.match(holder, '^(%d+)'))
end

-- Makes an execution terminal -- the one place every terminal write goes through: its
-- hash gets the state, the stop reason, the finish time, `err` (when `message` is given),
-- `res` (when `result` is given) and a history entry; its id joins the queue's list of
-- that terminal state; the event is emitted. The caller has released the slot and removed
-- the timers. x = { key, list, events, maxlen, cap, queue, id, att, from, hn, pushed }:
-- with `pushed` (a list the caller RPUSHes to `list` itself before the script ends, in
-- order), the id is appended to it instead of pushed at once.
local function become_terminal(x, now, to, stop_reason, reason, message, result, due)
  local fields = { 'st', to, 'sr', stop_reason, 'fin', now,
    hist_push(x.hn, now, to, reason, x.att, x.cap) }
  if message then
    fields[#fields + 1] = 'err'
    fields[#fields + 1] = message
  end
  if result and result ~= '' then
    fields[#fields + 1] = 'res'
    fields[#fields + 1] = result
  end
  redis.call('HSET', x.key, unpack(fields))
  if x.pushed then
    x.pushed[#x.pushed + 1] = x.id
  else
    redis.call('RPUSH', x.list, x.id)
  end
  emit(x.events, x.maxlen, x.queue, x.id, x.att, x.from, to, reason, message or '', due)
end

-- The stop reason of a cancellation whose cause (execution field `cxr`) is `cause`: the
-- cause when it names one (budget_exceeded), else 'cancelled' (an operator's cancel).
local function cancel_stop(cause)
  if cause == 'budget_exceeded' then return cause end
  return 'cancelled'
end

-- Release a capacity slot only if (id, attempt) is its current holder. Returns 1 when freed.
local function release_slot(slots, id, attempt)
  local holder = redis.call('HGET', slots, id)
  if holder and holder_attempt(holder) == tonumber(attempt) then
    redis.call('HDEL', slots, id)
    return 1
  end
  return 0
end

-- Judge a worker's attempt token against the execution. nil means the token is current
-- and the execution is active (dispatched, running or stuck); otherwise the reply to send.
local function token_verdict(st, att, tok, sr, want_att, want_tok)
  if not st then return { 'missing' } end
  if TERMINAL[st] then return { 'terminal', st, sr or '' } end
  local a, w = tonumber(att), tonumber(want_att)
  if w == nil then return { 'mismatch', att, st } end
  if w < a or (w == a and (st == 'queued' or st == 'awaiting')) then
    return { 'stale', att, st }
  end
  if w > a or tok ~= want_tok then return { 'mismatch', att, st } end
  return nil
end

-- Remove the timers an active state owns (not the deadline, which spans attempts).
-- timers = { start =, heartbeat =, progress =, stuck =, cancel = } zset keys.
local function drop_active_timers(timers, member, st, cancel_requested)
  if st == 'dispatched' then
    redis.call('ZREM', timers.start, member)
  elseif st == 'running' then
    redis.call('ZREM', timers.heartbeat, member)
    redis.call('ZREM', timers.progress, member)
  elseif st == 'stuck' then
    redis.call('ZREM', timers.stuck, member)
  end
  if cancel_requested then redis.call('ZREM', timers.cancel, member) end
end
