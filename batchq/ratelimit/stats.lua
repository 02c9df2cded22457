-- stats: a snapshot for metrics and tests. Keys and common ARGV: see lib.lua. No script ARGV.
-- Answers name/value pairs: in_flight, requests (reserved in the window), tokens (in the window), cooldown (ms
-- left), waiters, ahead (ms until the latest reservation).
local now = now_ms()
local in_flight = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local requests = redis.call('ZCOUNT', KEYS[3], '(' .. (now - WINDOW), '+inf')
local tokens = prune_tokens(now - WINDOW)
local cooldown = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') - now, 0)
local waiters = redis.call('LLEN', KEYS[9])
local ahead = math.max(tonumber(redis.call('GET', KEYS[10]) or '0') - now, 0)
return {'in_flight', in_flight, 'requests', requests, 'tokens', tokens, 'cooldown', cooldown, 'waiters', waiters,
  'ahead', tostring(ahead)}
