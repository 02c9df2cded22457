-- Record a line's outcome once (first write wins); the counters, the metrics and the feeding window move with it.
-- KEYS: 1=outcomes 2=counts 3=leases 4=batch record 5=open (dispatched lines) 6=metrics totals
--       7=scheduler's count of dispatched lines without outcome 8=the account's count of them
--       9=the account's metrics hash (outcome -> lines) 10=the set of accounts with such a hash (read by /metrics)
-- ARGV: 1=line 2=outcome JSON 3='completed'|'failed' 4=extra counter ('' or e.g. 'cancelled') 5=metric name
--       6=input tokens 7=output tokens 8=total tokens 9=cached tokens 10=reasoning tokens 11=account
-- Answers recorded (1 = this call wrote it, 0 = an earlier outcome stands), done (lines with an outcome), total.
local recorded = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if recorded == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
  local names = {'input_tokens', 'output_tokens', 'total_tokens', 'cached_tokens', 'reasoning_tokens'}
  for i, name in ipairs(names) do
    if ARGV[5 + i] ~= '0' then redis.call('HINCRBY', KEYS[2], name, ARGV[5 + i]) end
  end
  redis.call('HINCRBY', KEYS[6], ARGV[5], 1)
  redis.call('HINCRBY', KEYS[9], ARGV[3], 1)
  redis.call('SADD', KEYS[10], ARGV[11])
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[4], 'last_progress_ms', t[1] * 1000 + math.floor(t[2] / 1000))
end
if redis.call('ZREM', KEYS[5], ARGV[1]) == 1 then
  if tonumber(redis.call('DECR', KEYS[7])) < 0 then redis.call('SET', KEYS[7], 0) end
  if tonumber(redis.call('DECR', KEYS[8])) < 0 then redis.call('SET', KEYS[8], 0) end
end
redis.call('HDEL', KEYS[3], ARGV[1])
local c = redis.call('HMGET', KEYS[2], 'completed', 'failed')
local total = tonumber(redis.call('HGET', KEYS[4], 'total') or '0')
return {'recorded', recorded, 'done', (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0), 'total', total}
