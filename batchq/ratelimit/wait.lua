-- wait: a queued waiter's BLPOP timed out. Reclaims lapsed leases and serves the queue, then tells the waiter
-- where it stands. Keys and common ARGV: see lib.lua.
-- ARGV: 8 grant id, 9 its queue deadline (ms, as queued by acquire.lua), 10 "1" to give up now.
-- Answers name/value pairs, verdict first:
--   verdict 'held': the slot is now held (call acquire.lua with ARGV[13] = "1");
--   verdict 'gone': the deadline passed (or the waiter gave up): it has left the queue, nothing is held;
--   verdict 'queued', wake_in (ms): still queued, BLPOP again for at most that long.
local gid, deadline = ARGV[8], tonumber(ARGV[9])
local now = now_ms()
local wake = KEYS[9] .. ':' .. gid
if ARGV[10] == '1' then
  redis.call('LREM', KEYS[9], 1, gid .. ':' .. ARGV[9])
  redis.call('DEL', wake)
  redis.call('ZREM', KEYS[2], gid)
  handoff(now)
  return {'verdict', 'gone'}
end
handoff(now)
if redis.call('ZSCORE', KEYS[2], gid) then
  redis.call('DEL', wake)
  return {'verdict', 'held'}
end
if now >= deadline then
  redis.call('LREM', KEYS[9], 1, gid .. ':' .. ARGV[9])
  redis.call('DEL', wake)
  return {'verdict', 'gone'}
end
return {'verdict', 'queued', 'wake_in', tostring(wake_in(now, deadline))}
