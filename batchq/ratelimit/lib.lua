-- Shared helpers, prepended to every limiter script. The contract every script shares:
--
-- KEYS (all under keys.rate_limit(route), so in one hash slot):
--   1 cooldown  string  end of the shared pause after a 429 (ms, Redis clock)
--   2 inflight  zset    grant id -> lease expiry (ms); a member is one in-flight slot
--   3 req_log   zset    grant id -> reserved send time (ms): the sliding-window log of requests
--   4 req_tat   string  GCRA theoretical arrival time of requests (ms, fractional)
--   5 tok_log   zset    "<tokens>:<grant id>" -> reserved send time (ms): the sliding-window log of tokens
--   6 tok_sum   string  sum of the tokens in tok_log
--   7 tok_tat   string  GCRA theoretical arrival time of tokens (ms, fractional)
--   8 drain     string  set while an oversized request waits for an empty token window
--   9 waiters   list    "<grant id>:<deadline ms>" waiting for an in-flight slot, oldest first; the list
--                       KEYS[9] .. ':' .. <grant id> is where that waiter BLPOPs for its handoff
--  10 last      string  latest reserved send time (ms): no reservation goes before it, so waiters are FIFO
--
-- Common ARGV: 1 rpm, 2 tpm, 3 max in flight (0 = unlimited for all three), 4 window incl. guard (ms),
--              5 lease (ms), 6 requests allowed in any one second, 7 GCRA tolerance of requests (ms).
--              Each script's own arguments start at ARGV[8].
local RPM, TPM, CAP = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local WINDOW, LEASE = tonumber(ARGV[4]), tonumber(ARGV[5])
local PER_SECOND, TAU = tonumber(ARGV[6]), tonumber(ARGV[7])
-- Waiter entries one handoff looks at, at most (expired ones are skipped and dropped).
local HANDOFF_BUDGET = 64
-- Lease of a handed-over slot until its waiter wakes and takes it (acquire.lua, held): a waiter that died in the
-- queue holds the slot this long, not a whole lease.
local HANDOFF_LEASE = math.min(LEASE, 5000)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function amount(member)
  return tonumber(string.match(member, '^(%d+):')) or 0
end

-- Tokens in the window after dropping entries scored at or before `cutoff` (at most 512 of them per call).
local function prune_tokens(cutoff)
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', cutoff, 'LIMIT', 0, 512)
  local freed = 0
  for _, m in ipairs(old) do freed = freed + amount(m) end
  if #old > 0 then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, #old - 1) end
  if redis.call('ZCARD', KEYS[5]) == 0 then
    redis.call('DEL', KEYS[6])
    return 0
  end
  local raw = redis.call('GET', KEYS[6])
  if not raw then
    -- Only after the sum key was lost (eviction, manual delete): rebuild it from the log once.
    local sum = 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do sum = sum + amount(m) end
    redis.call('SET', KEYS[6], sum, 'PX', WINDOW + 1000)
    return sum
  end
  if freed > 0 then return math.max(redis.call('DECRBY', KEYS[6], freed), 0) end
  return math.max(tonumber(raw), 0)
end

-- Reclaims lapsed leases (their holders died), then hands free slots to the oldest live waiters: the slot is
-- theirs (a fresh lease) before they wake, so nobody races for it. Returns the number of lapsed leases.
local function handoff(now)
  local lapsed = redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if CAP <= 0 then return lapsed end
  local n = redis.call('ZCARD', KEYS[2])
  local budget = HANDOFF_BUDGET
  while n < CAP and budget > 0 do
    local entry = redis.call('LPOP', KEYS[9])
    if not entry then break end
    budget = budget - 1
    local sep = string.find(entry, ':', 1, true)
    local gid, deadline = string.sub(entry, 1, sep - 1), tonumber(string.sub(entry, sep + 1))
    if deadline > now then
      redis.call('ZADD', KEYS[2], now + HANDOFF_LEASE, gid)
      if redis.call('PTTL', KEYS[2]) < HANDOFF_LEASE + 1000 then
        redis.call('PEXPIRE', KEYS[2], HANDOFF_LEASE + 1000)
      end
      local wake = KEYS[9] .. ':' .. gid
      redis.call('LPUSH', wake, '1')
      redis.call('PEXPIRE', wake, deadline - now + 1000)
      n = n + 1
    end
  end
  return lapsed
end

-- Seconds-to-wake hint for a waiter: its deadline, or just after the earliest lease ends (it may have lapsed).
local function wake_in(now, deadline)
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local at = deadline
  if first[2] then at = math.min(at, tonumber(first[2]) + 1) end
  return math.max(at - now, 1)
end
