-- The clock, put first in every script by src/scripts.rs (before the script's hot path,
-- which may run ahead of the other preludes). Redis TIME, read once per script, is the
-- only clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Redis TIME in milliseconds as a decimal string. Redis 7.0 formats every Lua number
-- passed to redis.call with "%.17g" (and Lua's `..` with "%.14g"), about 0.2 µs each, so
-- the hot-path scripts keep times, attempts and timings as strings and do arithmetic only
-- where a new value is needed.
local function now_str()
  local t = redis.call('TIME')
  local us = t[2]
  return t[1] .. string.sub(string.sub('000000', #us + 1) .. us, 1, 3)
end
