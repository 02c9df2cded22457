-- keep: the call of one grant ended while a caller of the same process is ready for a slot (an in-flight-only
-- route: no rpm, no tpm). When nobody waits in Redis's queue, no cooldown runs and the grant still holds its slot,
-- the slot stays held with a fresh lease for that caller: no release and no acquire. Otherwise the slot is freed and
-- handed to the oldest waiter, as release.lua does. Keys and common ARGV: see lib.lua.
-- ARGV: 8 grant id.
-- Answers name/value pairs: kept 1 and now (ms) when the slot was kept, kept 0 when it was released.
local gid = ARGV[8]
local now = now_ms()
local cooling = tonumber(redis.call('GET', KEYS[1]) or '0') > now
if not cooling and redis.call('LLEN', KEYS[9]) == 0 and redis.call('ZSCORE', KEYS[2], gid) then
  redis.call('ZADD', KEYS[2], 'XX', now + LEASE, gid)
  if redis.call('PTTL', KEYS[2]) < LEASE + 1000 then redis.call('PEXPIRE', KEYS[2], LEASE + 1000) end
  return {'kept', 1, 'now', now}
end
redis.call('ZREM', KEYS[2], gid)
if CAP > 0 then handoff(now) end
return {'kept', 0}
