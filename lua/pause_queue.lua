-- pause_queue: an operator pauses a queue. Its claims answer 'paused' and take nothing
-- (long polls keep waiting) until resume_queue.lua; work already running goes on and is
-- still judged by the watchdog; retries and snoozes wait in the queue.
-- KEYS: 1 queue settings hash, 2 partition queue-name set, 3 partition events stream
-- ARGV: 1 queue, 2 who (for the event), 3 why, 4 events max length
-- Reply: {'paused', since ms} | {'already', since ms, by, why} (paused before: nothing
--        written) | {'unknown'} (no such queue: nothing written) | {'bad_arg', name}
-- Prelude: _lib.lua, _pause.lua

local maxlen = uint(ARGV[4])
if not maxlen then return { 'bad_arg', 'limits' } end
if not ARGV[2] or ARGV[2] == '' then return { 'bad_arg', 'by' } end
if not ARGV[3] or ARGV[3] == '' then return { 'bad_arg', 'reason' } end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return { 'unknown' } end
local now = now_str()
local p = { settings = KEYS[1], events = KEYS[3], maxlen = maxlen, queue = ARGV[1] }
local done, cur = pause_queue(p, now, ARGV[2], ARGV[3])
if not done then return { 'already', cur[1], cur[2], cur[3] } end
return { 'paused', now }
