-- release: the call of one grant ended. Frees its in-flight slot (handing it to the oldest waiter) and moves its
-- token-log entry (and the token TAT) by actual - reserved while the entry is still in the window.
-- Idempotent: a second release, or one of a lapsed grant, finds neither the slot nor the old entry.
-- Keys and common ARGV: see lib.lua.
-- ARGV: 8 grant id, 9 reserved tokens, 10 actual tokens (-1 = unknown: keep the reservation).
-- Returns 1 when the slot was still held, else 0.
local gid, reserved, actual = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local held = redis.call('ZREM', KEYS[2], gid)
local now = now_ms()
if CAP > 0 then handoff(now) end  -- an unlimited route never queues; acquire reclaims its lapsed leases
if actual < 0 or TPM <= 0 or actual == reserved then return held end
local old = reserved .. ':' .. gid
local score = redis.call('ZSCORE', KEYS[5], old)
if not score then return held end
-- add before removing, so the key never empties (an emptied key would lose its TTL)
redis.call('ZADD', KEYS[5], score, actual .. ':' .. gid)
redis.call('ZREM', KEYS[5], old)
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('INCRBY', KEYS[6], actual - reserved) end
-- the pace moves by at most one window's worth, whatever the upstream claims
local diff = math.min(actual, TPM) - math.min(reserved, TPM)
local tat = tonumber(redis.call('GET', KEYS[7]) or '0')
if diff > 0 then
  tat = math.max(tat, now) + diff * WINDOW / TPM
elseif tat > now then
  tat = math.max(tat + diff * WINDOW / TPM, now)
else
  return held
end
redis.call('SET', KEYS[7], string.format('%.3f', tat), 'PX', math.ceil(tat - now + WINDOW))
return held
