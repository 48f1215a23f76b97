-- Complete: turn the claim of ARGV[1] into a record.
-- KEYS[1] entry hash  ARGV[1] token  ARGV[2] encoded record  ARGV[3] retention (ms)
-- ARGV[4] fingerprint (for a claim that vanished)
-- Returns 1, or 0 when another token holds the key (its claim or its record).
-- The record keeps the token (t): a retry of a call whose reply was lost
-- finds its own record and is told it succeeded; the first record stands.
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r')
if e[1] and e[2] ~= ARGV[1] then
  return 0
end
if e[3] then
  return 1
end
-- HSET first: under maxmemory the first write is the one refused (OOM).
if e[1] then
  -- our claim: f and t stay as they are
  redis.call('HSET', KEYS[1], 'r', ARGV[2])
else
  redis.call('HSET', KEYS[1], 'f', ARGV[4], 't', ARGV[1], 'r', ARGV[2])
end
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
