-- set_queue: replace a queue's settings (capacity and default timings). A pause
-- (lua/_pause.lua) is not a setting: it survives the rewrite.
-- KEYS: 1 queue settings hash, 2 partition queue-name set
-- ARGV: 1 queue, then field/value pairs (cap, sg, ht, npt, dl, stt, ma, bb, bm, cg,
--       keep_*, mwt longest wait, wex 0|1 requeue at wait expiry) in ms
-- Reply: {'ok'} | {'bad_arg', name}
-- Prelude: _lib.lua, _pause.lua

for i = 2, #ARGV, 2 do
  if not ARGV[i + 1] or not uint(ARGV[i + 1]) then return { 'bad_arg', ARGV[i] } end
end
local pause = queue_pause(KEYS[1])
redis.call('DEL', KEYS[1])
if #ARGV > 1 then
  local pairs_ = {}
  for i = 2, #ARGV do pairs_[#pairs_ + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(pairs_))
end
if pause then
  redis.call('HSET', KEYS[1], 'pat', pause[1], 'pby', pause[2], 'pwhy', pause[3])
end
redis.call('SADD', KEYS[2], ARGV[1])
return { 'ok' }
