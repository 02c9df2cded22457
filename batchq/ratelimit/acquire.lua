-- acquire: take an in-flight slot (or a place in the waiters' queue) and reserve this request's send time under
-- the cooldown, rpm and tpm, in one call. Keys and common ARGV: see lib.lua.
-- ARGV: 8 grant id, 9 estimated tokens, 10 longest wait (ms), 11 drain grace (ms), 12 token-log walk (entries),
--       13 "1" when the caller already holds its in-flight slot (handed over while it waited, or a sender that
--          woke too late for its reservation: its log entries then move to the new time).
-- Answers name/value pairs, verdict first:
--   verdict 'granted', now, send_at: the slot is held and the send time reserved (send_at >= now, ms as a string);
--   verdict 'queued', now, wake_in, deadline: queued for an in-flight slot until deadline (ms): BLPOP
--                              KEYS[9]..':'..gid for at most wake_in ms, then call again with ARGV[13] = "1"
--                              (handed over) or run wait.lua with that deadline (timed out);
--   verdict 'denied', reason, wait: the wait (ms) would exceed ARGV[10]; nothing is reserved (a held slot is freed).
-- Send times are reserved in call order (FIFO) and are exact: the rpm-th latest reservation lies a whole window
-- before, the PER_SECOND-th latest a whole second before, and the tokens of any window fit the tpm.
local gid, tokens, max_wait = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local grace, walk, held = tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13] == '1'
local now = now_ms()

-- 1. The in-flight slot first: rates are reserved only once a slot is held, so no reserved time is spent queueing.
-- A handed-over slot whose short handoff lease lapsed before its waiter came is gone: queue again.
if held and not redis.call('ZSCORE', KEYS[2], gid) then held = false end
if not held then
  local _, n = handoff(now)
  if CAP > 0 and (n >= CAP or redis.call('LLEN', KEYS[9]) > 0) then
    if max_wait <= 0 then return {'verdict', 'denied', 'reason', 'in_flight', 'wait', tostring(wake_in(now, now + 1000))} end
    local deadline = now + max_wait
    redis.call('RPUSH', KEYS[9], gid .. ':' .. deadline)
    if redis.call('PTTL', KEYS[9]) < max_wait + 1000 then redis.call('PEXPIRE', KEYS[9], max_wait + 1000) end
    return {'verdict', 'queued', 'now', now, 'wake_in', tostring(wake_in(now, deadline)), 'deadline', deadline}
  end
end

-- 2. The earliest send time every constraint allows, and the constraint that set it.
local at, reason = now, 'cooldown'
local function later(t, r)
  if t > at then at, reason = t, r end
end
later(tonumber(redis.call('GET', KEYS[1]) or '0'), 'cooldown')
local use_tokens = TPM > 0 and tokens > 0
local queued = RPM > 0 or use_tokens
if queued then later(tonumber(redis.call('GET', KEYS[10]) or '0'), RPM > 0 and 'rpm' or 'tpm') end

local req_tat = 0
if RPM > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - WINDOW)
  req_tat = tonumber(redis.call('GET', KEYS[4]) or '0')
  later(req_tat - TAU, 'rpm')
  local nth = redis.call('ZREVRANGE', KEYS[3], RPM - 1, RPM - 1, 'WITHSCORES')
  if nth[2] then later(tonumber(nth[2]) + WINDOW, 'rpm') end
  if PER_SECOND > 0 and PER_SECOND < RPM then
    nth = redis.call('ZREVRANGE', KEYS[3], PER_SECOND - 1, PER_SECOND - 1, 'WITHSCORES')
    if nth[2] then later(tonumber(nth[2]) + 1000, 'rpm') end
  end
end

local tok_tat, sum, oversized = 0, 0, false
if use_tokens then
  oversized = tokens > TPM
  if not oversized then
    local drain = redis.call('PTTL', KEYS[8])
    if drain > 0 then later(now + drain, 'too_large') end
  end
  sum = prune_tokens(now - WINDOW)
  tok_tat = tonumber(redis.call('GET', KEYS[7]) or '0')
  later(tok_tat, 'tpm')
  -- Entries that must leave the window first; an oversized request waits for an empty window.
  local shed = oversized and sum or sum + tokens - TPM
  if shed > 0 then
    local entries = redis.call('ZRANGE', KEYS[5], 0, walk - 1, 'WITHSCORES')
    local leave = false
    for i = 1, #entries, 2 do
      shed = shed - amount(entries[i])
      if shed <= 0 then leave = tonumber(entries[i + 1]); break end
    end
    local why = oversized and 'too_large' or 'tpm'
    if not leave then
      -- More entries than the walk: this is a lower bound, so the caller asks again then (rare, bounded).
      local last_seen = tonumber(entries[#entries]) or now
      if held then redis.call('ZREM', KEYS[2], gid); handoff(now) end
      return {'verdict', 'denied', 'reason', why, 'wait', tostring(math.max(last_seen + WINDOW - now, 1))}
    end
    later(leave + WINDOW, why)
  end
end

-- 3. Too long a wait: reserve nothing.
local wait = at - now
if wait > max_wait then
  if oversized then
    redis.call('SET', KEYS[8], '1', 'PX', math.ceil(wait + grace))
  end
  if held then
    redis.call('ZREM', KEYS[2], gid)
    handoff(now)
  end
  return {'verdict', 'denied', 'reason', reason, 'wait', string.format('%.3f', wait)}
end

-- 4. Reserve: the slot's lease covers the wait, the logs and TATs move to the reserved time.
redis.call('ZADD', KEYS[2], at + LEASE, gid)
local ttl = math.ceil(wait + LEASE + 1000)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end  -- never shorten others' leases
local keep = math.ceil(wait + WINDOW + 1000)
if RPM > 0 then
  redis.call('ZADD', KEYS[3], at, gid)
  redis.call('PEXPIRE', KEYS[3], keep)
  local tat = math.max(req_tat, at) + WINDOW / RPM
  redis.call('SET', KEYS[4], string.format('%.3f', tat), 'PX', math.ceil(tat - now + WINDOW))
end
if use_tokens then
  -- ZADD returns 0 when a late sender re-reserves: its entry moves, the sum already holds its tokens
  if redis.call('ZADD', KEYS[5], at, tokens .. ':' .. gid) == 1 then sum = sum + tokens end
  redis.call('PEXPIRE', KEYS[5], keep)
  redis.call('SET', KEYS[6], sum, 'PX', keep)
  -- an oversized request paces like a full window's worth, not more
  local tat = math.max(tok_tat, at) + math.min(tokens, TPM) * WINDOW / TPM
  redis.call('SET', KEYS[7], string.format('%.3f', tat), 'PX', math.ceil(tat - now + WINDOW))
  if oversized then redis.call('DEL', KEYS[8]) end
end
if queued then redis.call('SET', KEYS[10], string.format('%.3f', at), 'PX', keep) end
return {'verdict', 'granted', 'now', now, 'send_at', string.format('%.3f', at)}
