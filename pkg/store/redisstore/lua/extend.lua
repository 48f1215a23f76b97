-- Extend: push back the lease of the claim of ARGV[1], or re-create it.
-- KEYS[1] entry hash  ARGV[1] token  ARGV[2] lease (ms)  ARGV[3] fingerprint
-- ARGV[4] retention (ms)
-- Returns 1 renewed, 2 re-created (the claim had vanished), or 0 when
-- another token holds the key or it is completed.
redis.replicate_commands()
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local lease = tonumber(ARGV[2])
local until_ = string.format('%.0f', now + lease)
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r')
if e[1] then
  if e[3] or e[2] ~= ARGV[1] then
    return 0
  end
  redis.call('HSET', KEYS[1], 'l', until_)
  -- a claim renewed past its retention must outlive its lease
  if redis.call('PTTL', KEYS[1]) < lease then
    redis.call('PEXPIRE', KEYS[1], lease)
  end
  return 1
end
redis.call('HSET', KEYS[1], 'f', ARGV[3], 't', ARGV[1], 'l', until_)
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), lease))
return 2
