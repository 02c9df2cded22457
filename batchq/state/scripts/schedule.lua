-- Put a batch with lines left to feed on the schedule. A newcomer starts level with the least-served peer,
-- so it neither waits behind the backlog nor takes every slot to "catch up".
-- KEYS: 1=accounts zset 2=urgent zset 3=the account's batches zset
-- ARGV: 1=batch id 2=account 3=when the batch becomes urgent (unix s)
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  local low = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[3], #low > 0 and low[2] or 0, ARGV[1])
end
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  local low = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[1], #low > 0 and low[2] or 0, ARGV[2])
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
