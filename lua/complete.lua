-- complete: the current attempt succeeded. Terminal; frees the slot if this attempt holds it.
-- KEYS: 1 execution hash, 2 partition events stream, 3 queue slots hash, 4 start timer,
--       5 heartbeat timer, 6 progress timer, 7 deadline timer, 8 stuck timer,
--       9 cancel timer, 10 queue 'succeeded' index
-- ARGV: 1 timer member "<queue>/<id>", 2 attempt, 3 nonce, 4 result JSON ('' for none),
--       5 events max length, 6 history cap
-- Reply: {'ok', slot_released 0|1}
--        {'stale', current_attempt, state} | {'mismatch', current_attempt, state}
--        {'terminal', state, stop_reason} (a replay: the first outcome) | {'missing'}
--        {'bad_arg', name}

if not uint(ARGV[5]) or not uint(ARGV[6]) then return { 'bad_arg', 'limits' } end
return complete_attempt(completion_keys(), ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
  tonumber(ARGV[6]), now_str())
