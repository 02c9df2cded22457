-- Move a batch's status along an allowed edge, setting its timestamp in the same step.
-- KEYS: 1=batch record hash 2=account active set 3=global active set 4=its input file's readers set
-- ARGV: 1=comma list of statuses allowed as the current one 2=new status 3=timestamp field ('' = none)
--       4=now (unix s) 5='1' when the new status is final (it leaves the active sets and stops reading its input)
-- Returns the status the batch had before ('' when it does not exist). It moved only if that is in ARGV[1].
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return '' end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[2])
    if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) end
    if ARGV[5] == '1' then
      local id = redis.call('HGET', KEYS[1], 'id')
      redis.call('SREM', KEYS[2], id)
      redis.call('SREM', KEYS[3], id)
      redis.call('SREM', KEYS[4], id)
    end
    return current
  end
end
return current
