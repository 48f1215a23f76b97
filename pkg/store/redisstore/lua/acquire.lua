-- Acquire: claim KEYS[1] or report why not, in one call.
-- KEYS[1] entry hash   ARGV[1] fingerprint   ARGV[2] new token   ARGV[3] lease (ms)
-- Returns {1} acquired, {2, record} completed, {3, pttl} in flight, {4} mismatch.
-- Redis drops a key once its PX deadline passes, so an expired claim or
-- record reads as absent here and is simply claimed again (takeover).
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r')
if not e[1] then
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 't', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
if e[1] ~= ARGV[1] then
  return {4}
end
if e[3] then
  return {2, e[3]}
end
return {3, redis.call('PTTL', KEYS[1])}
