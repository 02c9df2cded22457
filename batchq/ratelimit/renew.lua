-- renew: the holders of these grants are alive; extend each lease to now + lease (never shorten one).
-- A lapsed grant is not revived: its slot may be someone else's already. Keys and common ARGV: see lib.lua.
-- ARGV: 8.. grant ids.
-- Returns one flag per grant id: 1 renewed, 0 unknown or lapsed (released, or its holder was presumed dead).
local now = now_ms()
handoff(now)
local out, any = {}, false
for i = 8, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], 'XX', 'GT', now + LEASE, ARGV[i])
    out[#out + 1], any = 1, true
  else
    out[#out + 1] = 0
  end
end
if any and redis.call('PTTL', KEYS[2]) < LEASE + 1000 then redis.call('PEXPIRE', KEYS[2], LEASE + 1000) end
return out
