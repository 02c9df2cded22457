-- Flow-controlled, fair feeding: pick the next lines to hand to the broker, at most the window in total.
-- Order: a batch near its deadline first; else the account with the least virtual time (lines fed / weight),
-- and within it the batch with the fewest lines fed. Batches that stopped or ran out of lines leave the schedule.
-- KEYS: 1=accounts zset 2=urgent zset 3=queued counter 4=weights hash
-- ARGV: 1=window 2=lines per pick 3=due-back delay of a fed line (ms) 4=most lines to return
--       5,6,7,8=templates (keys.py, '%s' for the id) of a batch's record and open set, and of an account's batches
--       zset and queued counter
--       9=queue list to push the picked lines' request messages onto ('' = push nothing: the caller publishes)
--       10=message template (batchq.broker.messages) 11,12,13=its batch, line and delivery-tag placeholders
-- Returns a flat list {batch_id, line, batch_id, line, ...}. Touches per-batch and per-account keys named from the
-- templates (single-node Redis, as Celery's Redis transport requires anyway).
local RECORD, OPEN, ACCOUNT_BATCHES, ACCOUNT_QUEUED = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local queue = ARGV[9] or ''
local window, chunk, grace, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now = now_s * 1000 + math.floor(t[2] / 1000)
local free = math.min(window - tonumber(redis.call('GET', KEYS[3]) or '0'), limit)
local out = {}

local function unschedule(account, batch)
  redis.call('ZREM', KEYS[2], batch)
  if account then
    local akey = string.format(ACCOUNT_BATCHES, account)
    redis.call('ZREM', akey, batch)
    if redis.call('ZCARD', akey) == 0 then redis.call('ZREM', KEYS[1], account) end
  end
end

local picks = 0
while free > 0 and picks < 256 do
  picks = picks + 1
  local batch, account
  local urgent = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_s, 'LIMIT', 0, 1)
  if #urgent > 0 then
    batch = urgent[1]
    account = redis.call('HGET', string.format(RECORD, batch), 'account')
    if not account then redis.call('ZREM', KEYS[2], batch); batch = nil end
  else
    local first = redis.call('ZRANGE', KEYS[1], 0, 0)
    if #first == 0 then break end
    account = first[1]
    local b = redis.call('ZRANGE', string.format(ACCOUNT_BATCHES, account), 0, 0)
    if #b == 0 then redis.call('ZREM', KEYS[1], account) else batch = b[1] end
  end
  if batch then
    local rkey = string.format(RECORD, batch)
    local r = redis.call('HMGET', rkey, 'status', 'cursor', 'total', 'cancelling_at', 'expires_at')
    local cursor, total = tonumber(r[2] or '0'), tonumber(r[3] or '0')
    if r[1] ~= 'in_progress' or stop_code(r[1], r[4], r[5], now) ~= '' or cursor >= total then
      unschedule(account, batch)
    else
      local n = math.min(free, chunk, total - cursor)
      local okey = string.format(OPEN, batch)
      for line = cursor, cursor + n - 1 do
        redis.call('ZADD', okey, now + grace, line)
        out[#out + 1] = batch
        out[#out + 1] = line
        if queue ~= '' then
          -- the placeholders are letters and digits, taken as plain text; '%' in a replacement must be doubled
          local b = string.gsub(batch, '%%', '%%%%')
          local msg = string.gsub(ARGV[10], ARGV[13], b .. '.' .. line .. '.' .. t[1] .. '.' .. t[2])
          msg = string.gsub(msg, ARGV[11], b)
          msg = string.gsub(msg, ARGV[12], tostring(line))
          redis.call('LPUSH', queue, msg)
        end
      end
      redis.call('HSET', rkey, 'cursor', cursor + n)
      redis.call('INCRBY', KEYS[3], n)
      redis.call('INCRBY', string.format(ACCOUNT_QUEUED, account), n)
      free = free - n
      local w = tonumber(redis.call('HGET', KEYS[4], account) or '1') or 1
      if w <= 0 then w = 1 end
      redis.call('ZINCRBY', KEYS[1], n / w, account)
      redis.call('ZINCRBY', string.format(ACCOUNT_BATCHES, account), n, batch)
      if cursor + n >= total then unschedule(account, batch) end
    end
  end
end
return out
