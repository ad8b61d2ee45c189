-- hook_enqueue: puts hook calls in the outbox, each under its idempotency key (a key seen
-- before is skipped), and records how far the event stream they came from was read, in
-- the same script: a replica that dies between the two cannot lose a call, and one that
-- reads the same events again adds nothing.
-- KEYS: 1 pending list, 2 cursor hash
-- ARGV: 1 call key prefix, 2 cursor field ('' none), 3 cursor value,
--       then groups of 4: key, hook name, body, terminate target ('' none; see _outbox.lua)
-- Reply: {'ok', added}
-- Prelude: _lib.lua, _outbox.lua

if (#ARGV - 3) % 4 ~= 0 or ARGV[1] == '' then return { 'bad_arg', 'args' } end
local now = now_ms()
local added = 0
for i = 4, #ARGV, 4 do
  added = added + outbox_add(KEYS[1], ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2], '', '', now,
    ARGV[i + 3])
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
return { 'ok', added }
