-- Get (read-only): the entry, its remaining time and the server clock.
-- KEYS[1] entry hash
-- Returns nil when absent, else {fingerprint, pttl (ms), record or false,
-- lease deadline (ms) or false, now (ms), token or false}.
local e = redis.call('HMGET', KEYS[1], 'f', 'r', 'l', 't')
if not e[1] then
  return false
end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
return {e[1], redis.call('PTTL', KEYS[1]), e[2] or false, e[3] or false, now, e[4] or false}
