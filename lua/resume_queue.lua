-- resume_queue: an operator resumes a paused queue; the `queue_resumed` event wakes the
-- claims waiting on it at once (src/ledger/wait.rs).
-- KEYS: 1 queue settings hash, 2 partition queue-name set, 3 partition events stream
-- ARGV: 1 queue, 2 who (for the event), 3 why ('' for none), 4 events max length
-- Reply: {'resumed', paused since ms, paused by, why paused} | {'running'} (not paused:
--        nothing written) | {'unknown'} (no such queue: nothing written) | {'bad_arg', name}
-- Prelude: _lib.lua, _pause.lua

local maxlen = uint(ARGV[4])
if not maxlen then return { 'bad_arg', 'limits' } end
if not ARGV[2] or ARGV[2] == '' then return { 'bad_arg', 'by' } end
if not ARGV[3] then return { 'bad_arg', 'reason' } end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return { 'unknown' } end
local p = { settings = KEYS[1], events = KEYS[3], maxlen = maxlen, queue = ARGV[1] }
local done, ended = resume_queue(p, ARGV[2], ARGV[3])
if not done then return { 'running' } end
return { 'resumed', ended[1], ended[2], ended[3] }
