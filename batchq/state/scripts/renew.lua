-- Heartbeat: push out the leases this owner still holds on lines of one batch.
-- KEYS: 1=leases 2=open (dispatched lines)
-- ARGV: 1=owner token 2=lease length (ms) 3..n=line numbers
-- Returns how many leases were renewed (a line finished or taken over by another owner is left alone).
local t = redis.call('TIME')
local expiry = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
local suffix = ':' .. ARGV[1]
local renewed = 0
for i = 3, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and string.sub(held, -#suffix) == suffix then
    redis.call('HSET', KEYS[1], ARGV[i], expiry .. suffix)
    redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
