-- Shared by the batch scripts (prepended to each).

-- The one stop rule: what a line not yet sent becomes now. 'batch_cancelled' once a cancel was asked,
-- 'batch_expired' past the completion window, '' while the batch may go on. Its Python twin is
-- batchq.state.records.stop_code (a test holds the two equal).
local function stop_code(status, cancelling_at, expires_at, now_ms)
  if status == 'cancelling' or status == 'cancelled' or (cancelling_at and cancelling_at ~= '') then
    return 'batch_cancelled'
  end
  local expires = tonumber(expires_at or '0') or 0
  if expires > 0 and expires * 1000 <= now_ms then return 'batch_expired' end
  return ''
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
