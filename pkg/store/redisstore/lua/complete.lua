-- Complete: turn the claim of ARGV[1] into a record.
-- KEYS[1] entry hash  ARGV[1] token  ARGV[2] encoded record  ARGV[3] retention (ms)
-- ARGV[4] fingerprint (for a claim that vanished)
-- Returns 1, or 0 when another token holds the key or it is completed.
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r')
if e[1] and (e[3] or e[2] ~= ARGV[1]) then
  return 0
end
-- HSET first: under maxmemory the first write is the one refused (OOM).
redis.call('HSET', KEYS[1], 'f', e[1] or ARGV[4], 'r', ARGV[2])
redis.call('HDEL', KEYS[1], 't', 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
