-- Record what validation found, only while the batch still validates (a cancel meanwhile keeps total 0).
-- KEYS: 1=batch record   ARGV: 1=total 2=model ('' = none)
-- Returns 1 when written, 0 when the batch left 'validating'.
if redis.call('HGET', KEYS[1], 'status') ~= 'validating' then return 0 end
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'cursor', 0)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'model', ARGV[2]) end
return 1
