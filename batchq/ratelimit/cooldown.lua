-- cooldown: hold every worker off the route until now + ARGV[8] ms (after an upstream 429); extends, never
-- shortens. Reservations made from now on go after it. Keys and common ARGV: see lib.lua.
-- ARGV: 8 cooldown (ms). Returns its end (ms, Redis clock).
local now = now_ms()
local want = now + tonumber(ARGV[8])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur >= want then return cur end
redis.call('SET', KEYS[1], string.format('%d', want), 'PX', want - now)
return want
