-- Complete: turn the claim owned by ARGV[1] into a record.
-- KEYS[1] entry hash   ARGV[1] token   ARGV[2] encoded record   ARGV[3] retention (ms)
-- Returns 1, or 0 when the token no longer owns an in-flight claim (lease lost).
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 't')
redis.call('HSET', KEYS[1], 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
