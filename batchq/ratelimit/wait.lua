-- wait: a queued waiter's BLPOP timed out. Reclaims lapsed leases and serves the queue, then tells the waiter
-- where it stands. Keys and common ARGV: see lib.lua.
-- ARGV: 8 grant id, 9 its queue deadline (ms, as queued by acquire.lua).
-- Returns {1} the slot is now held (call acquire.lua with ARGV[13] = "1");
--         {0} the deadline passed: the waiter has left the queue, nothing is held;
--         {2, wake_in_ms} still queued: BLPOP again for at most that long.
local gid, deadline = ARGV[8], tonumber(ARGV[9])
local now = now_ms()
handoff(now)
local wake = KEYS[9] .. ':' .. gid
if redis.call('ZSCORE', KEYS[2], gid) then
  redis.call('DEL', wake)
  return {1}
end
if now >= deadline then
  redis.call('LREM', KEYS[9], 1, gid .. ':' .. ARGV[9])
  redis.call('DEL', wake)
  return {0}
end
return {2, tostring(wake_in(now, deadline))}
