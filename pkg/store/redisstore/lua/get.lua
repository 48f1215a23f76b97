-- Get (read-only): the entry and its remaining time, read atomically.
-- KEYS[1] entry hash
-- Returns nil when absent, else {fingerprint, pttl (ms), record or nil}.
local e = redis.call('HMGET', KEYS[1], 'f', 'r')
if not e[1] then
  return false
end
return {e[1], redis.call('PTTL', KEYS[1]), e[2]}
