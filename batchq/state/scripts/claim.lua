-- Claim one line for this worker: everything the request stage needs, in one round trip.
-- KEYS: 1=batch record 2=outcomes 3=leases 4=index 5=open (dispatched lines) 6=attempts
-- ARGV: 1=line 2=owner token 3=lease length (ms) 4=index entry size (bytes)
-- A lease held by owner '-' is a countdown re-queue's: the retry (or any copy of it) may take it.
-- Answers name/value pairs, verdict first:
--   verdict 'gone'                 no such batch
--   verdict 'skip', status         the batch is not running (validating, final)
--   verdict 'done'                 the line has an outcome
--   verdict 'held'                 another live worker holds the lease
--   verdict 'claimed', status, stop_code, endpoint, input_storage_key, entry (the index entry), attempt, now_ms,
--     account: the caller now holds the lease; attempt counts this one unless the batch stopped (stop_code is
--     then what the line becomes, and it is not sent)
local r = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'endpoint', 'input_storage_key', 'cancelling_at',
  'account')
local status = r[1]
if not status then return {'verdict', 'gone'} end
if status ~= 'in_progress' and status ~= 'cancelling' and status ~= 'finalizing' then
  return {'verdict', 'skip', 'status', status}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'verdict', 'done'} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  local expiry = tonumber(string.match(held, '^(%d+)')) or 0
  if expiry > now and string.sub(held, -2) ~= ':-' then return {'verdict', 'held'} end
end
local expiry = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], expiry .. ':' .. ARGV[2])
redis.call('ZADD', KEYS[5], 'XX', expiry, ARGV[1])
local size = tonumber(ARGV[4])
local start = tonumber(ARGV[1]) * size
local entry = redis.call('GETRANGE', KEYS[4], start, start + size - 1)
local attempt = 0
local stop = stop_code(status, r[5], r[2], now)
if stop == '' then
  attempt = redis.call('HINCRBY', KEYS[6], ARGV[1], 1)
  redis.call('HSETNX', KEYS[1], 'first_request_at', t[1])
end
return {'verdict', 'claimed', 'status', status, 'stop_code', stop, 'endpoint', r[3] or '',
  'input_storage_key', r[4] or '', 'entry', entry, 'attempt', attempt, 'now_ms', now, 'account', r[6] or ''}
