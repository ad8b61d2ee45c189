-- Usage and budgets, prepended after _lib.lua and _pause.lua: heartbeat.lua takes a usage
-- delta (complete and fail send theirs through it first) and usage_fold.lua folds the
-- journal. Every amount is "input|output|cached|cost" text (cost in integer micro-units),
-- so one field holds a whole sum and one HSET writes them all.
--
-- A delta is judged on the beat and summed later, in one place. The caller sends it as
-- its journal entry, "<queue>/<id>|<attempt>|<seq>|<input>|<output>|<cached
-- input>|<cost>|<model>" (src/ledger/usage/mod.rs), and the beat appends it to the
-- queue's journal once the token is checked; usage_fold adds the journal to the sums (an
-- execution's, per model, the queue's totals and window) in arrival order, skipping a
-- delta whose seq its attempt has had (a replay), and pauses a queue whose window budget
-- it spends. So a plain usage beat parses no number. An entry ending "|a" was applied to
-- the execution's total on the beat, which judged the budget at once (usage_fast,
-- apply_usage: executions with a budget); the fold adds its per-model and queue sums.
-- The fold runs in every watchdog round (the partition's journal index lists the queues
-- with a journal) and before anything reads a sum (src/ledger/usage/fold.rs), so reads
-- see every delta the ledger accepted.
-- Execution hash fields:
--   us usage summed over all attempts; um:<model> the same per model ('um:' none named)
--   usq "<attempt>:<seq>" of the last delta applied (a delta is applied once: its seq must
--       be above the last one of its attempt)
--   bg the execution's budget "tokens|cost|warning per mille" ('0|0|0': none); set at
--      enqueue, or by its first delta from the queue's default budget then in force
--   bgw budget warning sent at (ms)
--   cxr why cancellation was requested: budget_exceeded (absent: an operator's cancel)
-- Queue usage hash (Keyspace::queue_usage, the queue's partition tag):
--   t totals; m:<model> totals per model; w the rolling window's totals; b:<start> one
--   bucket of the window (a 24th of it); wold the oldest bucket start that may remain;
--   wbs the bucket length (ms) those buckets were kept with
-- Queue settings: bgt, bgc, bgs the default execution budget (tokens, cost, warning per
-- mille); wbt, wbc, wbw the window budget (tokens, cost, window ms); 0: no limit.

local USAGE_ZERO = '0|0|0|0'
local USAGE_DAY_MS = 86400000
local USAGE_BUCKETS = 24

local function usage_parse(text)
  local a, b, c, d = string.match(text or USAGE_ZERO, '^(%d+)|(%d+)|(%d+)|(%d+)$')
  if not a then return { 0, 0, 0, 0 } end
  return { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
end

local function usage_text(u)
  return string.format('%d|%d|%d|%d', u[1], u[2], u[3], u[4])
end

-- u + sign * d, in place; returns u.
local function usage_add(u, d, sign)
  for i = 1, 4 do u[i] = u[i] + sign * d[i] end
  return u
end

-- Reads a journal entry (above): its member, attempt and the delta { seq, seq_text,
-- input, output, cached, cost (1..4), model, applied (ends "|a") }; or nil and the name
-- of the bad member.
local USAGE_ENTRY = '^([^|]*)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|([^|%c]*)(.*)$'

local function usage_read(entry)
  local member, att, seq, i, o, c, k, model, kind = string.match(entry or '', USAGE_ENTRY)
  if not member or (kind ~= '' and kind ~= '|a') then return nil, 'usage' end
  local d = { seq = tonumber(seq), seq_text = seq, model = model, applied = kind == '|a',
    tonumber(i), tonumber(o), tonumber(c), tonumber(k) }
  if d.seq < 1 or #seq > 20 then return nil, 'usage.seq' end
  for n, name in ipairs({ 'input_tokens', 'output_tokens', 'cached_input_tokens', 'cost' }) do
    if d[n] > 1e15 then return nil, 'usage.' .. name end
  end
  if d[3] > d[1] then return nil, 'usage.cached_input_tokens' end
  if #model > 128 then return nil, 'usage.model' end
  return d, member, att
end

-- The delta of a beat's entry, validated, and of the beat's own member and attempt.
local function usage_entry(entry, member, att)
  local d, m, a = usage_read(entry)
  if not d then return nil, m end
  if d.applied or m ~= member or a ~= att then return nil, 'usage' end
  d.text = entry
  return d
end

-- "a|b|c" of three non-negative integers; nil when absent or malformed.
local function usage_triple(text)
  if not text then return nil end
  local a, b, c = string.match(text, '^(%d+)|(%d+)|(%d+)$')
  if not a then return nil end
  return { tonumber(a), tonumber(b), tonumber(c) }
end

-- Whether u (a usage sum) reaches share (per mille) of the limits lim {tokens, cost}.
local function usage_reaches(u, lim, share)
  return (lim[1] > 0 and (u[1] + u[2]) * 1000 >= lim[1] * share)
    or (lim[2] > 0 and u[4] * 1000 >= lim[2] * share)
end

local function usage_spend(u, lim)
  if lim[1] > 0 and u[1] + u[2] >= lim[1] then
    return string.format('%d tokens of a budget of %d', u[1] + u[2], lim[1])
  end
  return string.format('cost %d of a budget of %d', u[4], lim[2])
end

-- Rolls the queue's window: subtracts the buckets that aged out of it (each once; at most
-- a window's worth of steps, however long the queue was idle). Returns the fields to
-- delete and the new oldest bucket start.
local function usage_roll(key, w, wold, cur, now, window, bucket)
  local gone = {}
  if not wold then return gone, cur end
  local cutoff = now - window
  local s = wold
  while s <= cutoff and s <= wold + window do
    local b = redis.call('HGET', key, 'b:' .. s)
    if b then
      usage_add(w, usage_parse(b), -1)
      gone[#gone + 1] = 'b:' .. s
    end
    s = s + bucket
  end
  if s > cur or s <= cutoff then s = cur end
  return gone, s
end

-- Appends delta d (usage_entry) to x.journal, with "|a" when the beat applied it to the
-- execution's total; the first entry lists the queue in the partition's index, x.index.
local function usage_journal(x, d, applied)
  local entry = d.text
  if applied then entry = entry .. '|a' end
  if redis.call('RPUSH', x.journal, entry) == 1 then
    redis.call('SADD', x.index, string.match(x.member, '^([^/]*)/'))
  end
end

-- The budget an execution's first delta fixes: the queue's default then in force, as
-- "tokens|cost|warning per mille" ('0|0|0': none).
local function usage_default_budget(settings)
  local conf = redis.call('HMGET', settings, 'bgt', 'bgc', 'bgs')
  return string.format('%d|%d|%d', tonumber(conf[1]) or 0, tonumber(conf[2]) or 0,
    tonumber(conf[3]) or 0)
end

-- The budget judgement of a new total tot against bg (a triple, nil: none): the fields
-- and events of a warning and of the limit. e = { bgw, cx, cg, hn, id } as read from
-- the execution. Returns the cause of a cancellation it requested ('' when none).
local function usage_judge(x, e, tot, bg, fields, now)
  if not bg or (bg[1] == 0 and bg[2] == 0) then return '' end
  local share = bg[3]
  if share == 0 then share = 800 end
  if not e.bgw and usage_reaches(tot, bg, share) then
    fields[#fields + 1] = 'bgw'; fields[#fields + 1] = now
    emit(x.events, x.maxlen, x.queue, e.id, x.att, x.st, x.st, 'budget_warning',
      usage_spend(tot, { bg[1] * share / 1000, bg[2] * share / 1000 }))
  end
  if (not e.cx or e.cx == '') and usage_reaches(tot, bg, 1000) then
    local detail = 'budget exceeded: ' .. usage_spend(tot, bg)
    for _, v in ipairs({ 'cx', now, 'cxr', 'budget_exceeded', 'err', detail,
      hist_push(e.hn, now, x.st, 'cancel_requested', x.att, x.cap) }) do
      fields[#fields + 1] = v
    end
    redis.call('ZADD', x.cancel, tonumber(now) + tonumber(e.cg or 0), x.member)
    emit(x.events, x.maxlen, x.queue, e.id, x.att, x.st, x.st, 'budget_exceeded', detail)
    return 'budget_exceeded'
  end
  return ''
end

-- Takes delta d of the execution x = { key, events, maxlen, cap, settings, journal,
-- index, cancel, member, att, st } on any beat but the hot ones: fixes its budget on the
-- first delta; without a budget journals it ('j'); with one applies it to the total at
-- once, judges the budget and journals the rest ('a'). Returns 'replayed' (nothing
-- written: seq already applied), or 'ok' and the cause of a cancellation it requested
-- ('' when none).
local function apply_usage(x, d, now)
  local r = redis.call('HMGET', x.key, 'usq', 'us', 'bg', 'bgw', 'cx', 'cg', 'hn', 'id', 'q')
  local e = { bgw = r[4], cx = r[5], cg = r[6], hn = r[7], id = r[8] }
  x.queue = r[9]
  local fields = {}
  local bg_text = r[3]
  if not bg_text then
    bg_text = usage_default_budget(x.settings)
    fields[1] = 'bg'; fields[2] = bg_text
  end
  local bg = usage_triple(bg_text)
  if not bg or (bg[1] == 0 and bg[2] == 0) then
    if #fields > 0 then redis.call('HSET', x.key, unpack(fields)) end
    usage_journal(x, d, false)
    return 'ok', ''
  end
  local la, ls = string.match(r[1] or '', '^(%d+):(%d+)$')
  if la == x.att and tonumber(ls) >= d.seq then return 'replayed', '' end
  local tot = usage_add(usage_parse(r[2]), d, 1)
  fields[#fields + 1] = 'usq'; fields[#fields + 1] = x.att .. ':' .. d.seq_text
  fields[#fields + 1] = 'us'; fields[#fields + 1] = usage_text(tot)
  local cause = usage_judge(x, e, tot, bg, fields, now)
  redis.call('HSET', x.key, unpack(fields))
  usage_journal(x, d, true)
  return 'ok', cause
end

-- A usage beat of a budgeted execution that is otherwise hot (heartbeat.lua): when the
-- delta is not a replay and crosses no budget threshold, the fields for the beat's HSET
-- (the new total and seq; the caller journals the delta, kind 'a'). Otherwise nil,
-- having written nothing: apply_usage decides.
local function usage_fast(x, d)
  local r = redis.call('HMGET', x.key, 'usq', 'us', 'bg', 'bgw')
  local bg = usage_triple(r[3])
  if not bg then return nil end
  local la, ls = string.match(r[1] or '', '^(%d+):(%d+)$')
  if la == x.att and tonumber(ls) >= d.seq then return nil end
  local tot = usage_add(usage_parse(r[2]), d, 1)
  local share = bg[3]
  if share == 0 then share = 800 end
  if (not r[4] and usage_reaches(tot, bg, share)) or usage_reaches(tot, bg, 1000) then
    return nil
  end
  return { 'usq', x.att .. ':' .. d.seq_text, 'us', usage_text(tot) }
end

-- Adds the deltas folded from a queue's journal to its usage hash: q = { usage,
-- settings, events, maxlen, queue }, sum their total, by_model their sums per model.
-- Rolls the window, and pauses the queue when these deltas spend its window budget (not
-- again while the window stays spent: an operator who resumes has decided to let the
-- work go on).
local function usage_queue_add(q, sum, by_model, now)
  local conf = redis.call('HMGET', q.settings, 'wbt', 'wbc', 'wbw')
  local wb = nil
  if conf[1] then wb = { tonumber(conf[1]) or 0, tonumber(conf[2]) or 0, tonumber(conf[3]) or 0 } end
  local window = USAGE_DAY_MS
  if wb and wb[3] > 0 then window = wb[3] end
  local bucket = math.max(math.floor(window / USAGE_BUCKETS), 1000)
  local n = tonumber(now)
  local cur = n - n % bucket
  local read = { 't', 'w', 'wold', 'b:' .. cur, 'wbs' }
  local models = {}
  for model in pairs(by_model) do
    models[#models + 1] = model
    read[#read + 1] = 'm:' .. model
  end
  local v = redis.call('HMGET', q.usage, unpack(read))
  local w = usage_parse(v[2])
  local gone, wold
  local old_bucket = tonumber(v[5])
  if v[3] and old_bucket and old_bucket ~= bucket then
    -- The window changed length: its buckets no longer line up; start it afresh.
    gone, wold, w = {}, cur, usage_parse(nil)
    for i = 0, USAGE_BUCKETS do
      local f = 'b:' .. string.format('%d', tonumber(v[3]) + i * old_bucket)
      if f ~= 'b:' .. cur then gone[#gone + 1] = f end
    end
    v[4] = nil
  else
    gone, wold = usage_roll(q.usage, w, tonumber(v[3]), cur, n, window, bucket)
  end
  local before = { w[1], w[2], w[3], w[4] }
  usage_add(w, sum, 1)
  local write = { 't', usage_text(usage_add(usage_parse(v[1]), sum, 1)), 'w', usage_text(w),
    'wold', string.format('%d', wold), 'wbs', string.format('%d', bucket), 'b:' .. cur,
    usage_text(usage_add(usage_parse(v[4]), sum, 1)) }
  for i, model in ipairs(models) do
    write[#write + 1] = 'm:' .. model
    write[#write + 1] = usage_text(usage_add(usage_parse(v[5 + i]), by_model[model], 1))
  end
  redis.call('HSET', q.usage, unpack(write))
  if #gone > 0 then redis.call('HDEL', q.usage, unpack(gone)) end
  if wb and (wb[1] > 0 or wb[2] > 0) and usage_reaches(w, wb, 1000)
    and not usage_reaches(before, wb, 1000) then
    pause_queue(q, now, 'budget', 'window budget spent: ' .. usage_spend(w, wb)
      .. ' in ' .. string.format('%d', window / 1000) .. 's')
  end
end

-- "a|b|c|d" plus a, b, c, d: the new text (the fold's sums, kept as text until written).
local function usage_plus_text(text, a, b, c, d)
  local w, x, y, z = string.match(text or USAGE_ZERO, '^(%d+)|(%d+)|(%d+)|(%d+)$')
  if not w then w, x, y, z = 0, 0, 0, 0 end
  return string.format('%d|%d|%d|%d', w + a, x + b, y + c, z + d)
end

-- "a|b|c|d" (USAGE_ZERO when absent) plus a, b, c, d: the new text.
local function usage_plus_text(text, a, b, c, d)
  local w, x, y, z = string.match(text or USAGE_ZERO, '^(%d+)|(%d+)|(%d+)|(%d+)$')
  if not w then w, x, y, z = 0, 0, 0, 0 end
  return string.format('%d|%d|%d|%d', w + a, x + b, y + c, z + d)
end

-- Folds up to `limit` entries of a queue's journal, oldest first: q = { journal, index,
-- usage, settings, events, maxlen, queue, xprefix (execution key prefix) }. An entry
-- that does not read (only a foreign writer makes one) is dropped. Returns how many it
-- took and whether more remain (the queue leaves the index when none do). Written for
-- few allocations per entry (the fold's cost is per delta): amounts are added up per
-- execution and model, and each stored sum is parsed and formatted once per call.
local function usage_fold(q, limit, now)
  local entries = redis.call('LRANGE', q.journal, 0, limit - 1)
  if #entries > 0 then redis.call('LTRIM', q.journal, #entries, -1) end
  local left = redis.call('LLEN', q.journal)
  if left == 0 then redis.call('SREM', q.index, q.queue) end
  if #entries == 0 then return 0, false end
  -- Per execution: key, here (it exists), la/ls/seq (last delta applied: attempt, seq,
  -- seq text), us (stored total), t (total added, nil: none), m: model -> { stored sum
  -- (false: none), amounts added (4) }.
  local xs, order = {}, {}
  local sum, by_model = { 0, 0, 0, 0 }, {}
  for _, entry in ipairs(entries) do
    local member, att, seq, i, o, c, k, model, kind = string.match(entry, USAGE_ENTRY)
    if member and #entry <= 400 and (kind == '' or kind == '|a') then
      i, o, c, k = tonumber(i), tonumber(o), tonumber(c), tonumber(k)
      local x = xs[member]
      if not x then
        local key = q.xprefix .. member
        local r = redis.call('HMGET', key, 'q', 'usq', 'us', 'um:' .. model)
        local la, ls = string.match(r[2] or '', '^(%d+):(%d+)$')
        x = { key = key, here = r[1] ~= nil, la = la, ls = tonumber(ls) or 0, us = r[3],
          m = { [model] = { r[4] or false, 0, 0, 0, 0 } } }
        xs[member] = x
        order[#order + 1] = x
      end
      local count = true
      if kind == '' then
        local n = tonumber(seq)
        if x.la == att and n <= x.ls then
          count = false -- a replay
        else
          x.la, x.ls, x.seq = att, n, seq
          local t = x.t
          if not t then t = { 0, 0, 0, 0 }; x.t = t end
          t[1], t[2], t[3], t[4] = t[1] + i, t[2] + o, t[3] + c, t[4] + k
        end
      end
      if count then
        local m = x.m[model]
        if not m then
          m = { x.here and redis.call('HGET', x.key, 'um:' .. model) or false, 0, 0, 0, 0 }
          x.m[model] = m
        end
        m[2], m[3], m[4], m[5], m[6] = m[2] + i, m[3] + o, m[4] + c, m[5] + k, true
        sum[1], sum[2], sum[3], sum[4] = sum[1] + i, sum[2] + o, sum[3] + c, sum[4] + k
        local b = by_model[model]
        if not b then b = { 0, 0, 0, 0 }; by_model[model] = b end
        b[1], b[2], b[3], b[4] = b[1] + i, b[2] + o, b[3] + c, b[4] + k
      end
    end
  end
  for _, x in ipairs(order) do
    if x.here then
      local write = {}
      local t = x.t
      if t then
        write = { 'usq', x.la .. ':' .. x.seq, 'us', usage_plus_text(x.us, t[1], t[2], t[3], t[4]) }
      end
      for model, m in pairs(x.m) do
        if m[6] then
          write[#write + 1] = 'um:' .. model
          write[#write + 1] = usage_plus_text(m[1] or nil, m[2], m[3], m[4], m[5])
        end
      end
      if #write > 0 then redis.call('HSET', x.key, unpack(write)) end
    end
  end
  if next(by_model) then usage_queue_add(q, sum, by_model, now) end
  return #entries, left > 0
end
