-- Usage and budgets, prepended after _lib.lua and _pause.lua (heartbeat.lua takes a usage
-- delta in ARGV 11..16; complete and fail send theirs through the same script first).
-- Every amount is "input|output|cached|cost" text (cost in integer micro-units), so one
-- field holds a whole sum and one HSET writes them all.
-- Execution hash fields:
--   us usage summed over all attempts; um:<model> the same per model ('um:' none named)
--   usq "<attempt>:<seq>" of the last delta applied (a delta is applied once: its seq must
--       be above the last one of its attempt)
--   bg the execution's budget "tokens|cost|warning per mille" (0: no limit; absent: the
--      queue's default budget, as it is when usage arrives)
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

-- The delta in args[u..u+5] (seq, input, output, cached, cost, model), validated; or nil
-- and the name of the bad member.
local function usage_arg(args, u)
  local seq = uint(args[u])
  if not seq or seq < 1 then return nil, 'usage.seq' end
  local d = { seq = seq, seq_text = args[u] }
  for i, name in ipairs({ 'input_tokens', 'output_tokens', 'cached_input_tokens', 'cost' }) do
    local v = uint(args[u + i])
    if not v or v > 1e15 then return nil, 'usage.' .. name end
    d[i] = v
  end
  if d[3] > d[1] then return nil, 'usage.cached_input_tokens' end
  local model = args[u + 5] or ''
  if #model > 128 or string.find(model, '[|%c]') then return nil, 'usage.model' end
  d.model = model
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

-- Applies delta d to the execution x = { key, events, maxlen, cap, settings, usage,
-- cancel, member, att, st } and its queue, then judges the budgets. Returns
-- 'replayed' (nothing written: seq already applied), or 'ok' and the cause of a
-- cancellation it requested ('' when none).
local function apply_usage(x, d, now)
  local mf = 'um:' .. d.model
  local e = redis.call('HMGET', x.key, 'usq', 'us', mf, 'bg', 'bgw', 'cx', 'cg', 'hn', 'id',
    'q')
  x.queue = e[10]
  local la, ls = string.match(e[1] or '', '^(%d+):(%d+)$')
  if la == x.att and tonumber(ls) >= d.seq then return 'replayed', '' end
  local conf = redis.call('HMGET', x.settings, 'bgt', 'bgc', 'bgs', 'wbt', 'wbc', 'wbw')

  local tot = usage_add(usage_parse(e[2]), d, 1)
  local fields = { 'usq', x.att .. ':' .. d.seq_text, 'us', usage_text(tot), mf,
    usage_text(usage_add(usage_parse(e[3]), d, 1)) }
  local cause = ''
  local bg = usage_triple(e[4])
  if not bg and conf[1] then
    bg = { tonumber(conf[1]) or 0, tonumber(conf[2]) or 0, tonumber(conf[3]) or 0 }
  end
  if bg and (bg[1] > 0 or bg[2] > 0) then
    local share = bg[3]
    if share == 0 then share = 800 end
    if not e[5] and usage_reaches(tot, bg, share) then
      fields[#fields + 1] = 'bgw'; fields[#fields + 1] = now
      emit(x.events, x.maxlen, x.queue, e[9], x.att, x.st, x.st, 'budget_warning',
        usage_spend(tot, { bg[1] * share / 1000, bg[2] * share / 1000 }))
    end
    if (not e[6] or e[6] == '') and usage_reaches(tot, bg, 1000) then
      local detail = 'budget exceeded: ' .. usage_spend(tot, bg)
      for _, v in ipairs({ 'cx', now, 'cxr', 'budget_exceeded', 'err', detail,
        hist_push(e[8], now, x.st, 'cancel_requested', x.att, x.cap) }) do
        fields[#fields + 1] = v
      end
      redis.call('ZADD', x.cancel, tonumber(now) + tonumber(e[7] or 0), x.member)
      emit(x.events, x.maxlen, x.queue, e[9], x.att, x.st, x.st, 'budget_exceeded', detail)
      cause = 'budget_exceeded'
    end
  end
  redis.call('HSET', x.key, unpack(fields))

  -- The queue: running totals, per model, and the rolling window.
  local wb = nil
  if conf[4] then wb = { tonumber(conf[4]) or 0, tonumber(conf[5]) or 0, tonumber(conf[6]) or 0 } end
  local window = USAGE_DAY_MS
  if wb and wb[3] > 0 then window = wb[3] end
  local bucket = math.max(math.floor(window / USAGE_BUCKETS), 1000)
  local n = tonumber(now)
  local cur = n - n % bucket
  local qm = 'm:' .. d.model
  local q = redis.call('HMGET', x.usage, 't', qm, 'w', 'wold', 'b:' .. cur, 'wbs')
  local w = usage_parse(q[3])
  local gone, wold
  local old_bucket = tonumber(q[6])
  if q[4] and old_bucket and old_bucket ~= bucket then
    -- The window changed length: its buckets no longer line up; start it afresh.
    gone, wold, w = {}, cur, usage_parse(nil)
    for i = 0, USAGE_BUCKETS do
      local f = 'b:' .. string.format('%d', tonumber(q[4]) + i * old_bucket)
      if f ~= 'b:' .. cur then gone[#gone + 1] = f end
    end
    q[5] = nil
  else
    gone, wold = usage_roll(x.usage, w, tonumber(q[4]), cur, n, window, bucket)
  end
  local before = { w[1], w[2], w[3], w[4] }
  usage_add(w, d, 1)
  redis.call('HSET', x.usage, 't', usage_text(usage_add(usage_parse(q[1]), d, 1)),
    qm, usage_text(usage_add(usage_parse(q[2]), d, 1)), 'w', usage_text(w),
    'wold', string.format('%d', wold), 'wbs', string.format('%d', bucket), 'b:' .. cur,
    usage_text(usage_add(usage_parse(q[5]), d, 1)))
  if #gone > 0 then redis.call('HDEL', x.usage, unpack(gone)) end
  -- The window budget pauses the queue when this delta crosses it (not again while the
  -- window stays spent: an operator who resumes has decided to let the work go on).
  if wb and (wb[1] > 0 or wb[2] > 0) and usage_reaches(w, wb, 1000)
    and not usage_reaches(before, wb, 1000) then
    pause_queue({ settings = x.settings, events = x.events, maxlen = x.maxlen,
      queue = x.queue }, now, 'budget', 'window budget spent: ' .. usage_spend(w, wb)
      .. ' in ' .. string.format('%d', window / 1000) .. 's')
  end
  return 'ok', cause
end

-- The usage hot path (heartbeat.lua): a delta on a beat that would take the plain hot
-- path (running, current token, no new progress, no checkpoint, no fingerprint, no cancel
-- requested). h is the beat's read of the execution: st att tok ht cx pr, then usq us
-- um:<model> bg bgw. When the delta is valid, not a replay, crosses no budget threshold
-- (warning, execution limit, window) and no bucket of the window ages out, it reads the
-- queue's budgets and usage (one HMGET each), writes the queue's sums (one HSET) and
-- returns the execution's fields for the beat's HSET: exactly what apply_usage would
-- write in that case. Otherwise nil, having written nothing: the slow path decides (and
-- refuses a bad delta). Written for few allocations: every string and table made here
-- is garbage the script's collector pays for on every beat.

-- text (a usage sum, USAGE_ZERO when absent or malformed) plus delta d: the new text, its
-- tokens (input + output) and its cost.
local function usage_plus(text, d)
  local a, b, c, e = string.match(text or USAGE_ZERO, '^(%d+)|(%d+)|(%d+)|(%d+)$')
  if not a then a, b, c, e = 0, 0, 0, 0 end
  a, b, c, e = a + d[1], b + d[2], c + d[3], e + d[4]
  return string.format('%d|%d|%d|%d', a, b, c, e), a + b, e
end

-- Whether tokens / cost reach share (per mille) of the limits (0: none).
local function usage_over(tokens, cost, lim_t, lim_c, share)
  return (lim_t > 0 and tokens * 1000 >= lim_t * share)
    or (lim_c > 0 and cost * 1000 >= lim_c * share)
end

local function usage_fast(h, args, settings, ukey, now)
  if not args[16] or not uint(args[8]) or not uint(args[9]) then return nil end
  local seq, i, o, c, k = string.match(args[11] .. '|' .. args[12] .. '|' .. args[13] .. '|'
    .. args[14] .. '|' .. args[15], '^(%d+)|(%d+)|(%d+)|(%d+)|(%d+)$')
  if not seq then return nil end
  local d = { tonumber(i), tonumber(o), tonumber(c), tonumber(k) }
  seq = tonumber(seq)
  if seq < 1 or d[1] > 1e15 or d[2] > 1e15 or d[3] > 1e15 or d[4] > 1e15 or d[3] > d[1] then
    return nil
  end
  local model = args[16]
  if #model > 128 or string.find(model, '[|%c]') then return nil end
  local la, ls = string.match(h[7] or '', '^(%d+):(%d+)$')
  if la == h[2] and tonumber(ls) >= seq then return nil end

  local conf = redis.call('HMGET', settings, 'bgt', 'bgc', 'bgs', 'wbt', 'wbc', 'wbw')
  local us, tokens, cost = usage_plus(h[8], d)
  local bg = h[10] and usage_triple(h[10])
  if not bg and conf[1] then
    bg = { tonumber(conf[1]) or 0, tonumber(conf[2]) or 0, tonumber(conf[3]) or 0 }
  end
  if bg and (bg[1] > 0 or bg[2] > 0) then
    local share = bg[3]
    if share == 0 then share = 800 end
    if (not h[11] and usage_over(tokens, cost, bg[1], bg[2], share))
      or usage_over(tokens, cost, bg[1], bg[2], 1000) then
      return nil
    end
  end

  local wb_t, wb_c, window = 0, 0, USAGE_DAY_MS
  if conf[4] then
    wb_t, wb_c = tonumber(conf[4]) or 0, tonumber(conf[5]) or 0
    local wms = tonumber(conf[6]) or 0
    if wms > 0 then window = wms end
  end
  local bucket = math.max(math.floor(window / USAGE_BUCKETS), 1000)
  local n = tonumber(now)
  local cur = n - n % bucket
  local bf = string.format('b:%d', cur)
  local qm = 'm:' .. model
  local q = redis.call('HMGET', ukey, 't', qm, 'w', 'wold', bf, 'wbs')
  local wold = tonumber(q[4])
  -- No roll due: the oldest bucket is still inside the window, kept at this length.
  if not wold or tonumber(q[6]) ~= bucket or wold <= n - window or wold > cur then
    return nil
  end
  local w, w_tokens, w_cost = usage_plus(q[3], d)
  if (wb_t > 0 or wb_c > 0) and usage_over(w_tokens, w_cost, wb_t, wb_c, 1000)
    and not usage_over(w_tokens - d[1] - d[2], w_cost - d[4], wb_t, wb_c, 1000) then
    return nil
  end
  redis.call('HSET', ukey, 't', (usage_plus(q[1], d)), qm, (usage_plus(q[2], d)), 'w', w,
    bf, (usage_plus(q[5], d)))
  return { 'usq', h[2] .. ':' .. args[11], 'us', us, 'um:' .. model, (usage_plus(h[9], d)) }
end
