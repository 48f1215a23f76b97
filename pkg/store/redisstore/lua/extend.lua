-- Extend: push back the lease of the claim owned by ARGV[1].
-- KEYS[1] entry hash   ARGV[1] token   ARGV[2] lease (ms)
-- Returns 1, or 0 when the token no longer owns an in-flight claim.
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
