-- Acquire: claim KEYS[1] or report why not, in one call.
-- KEYS[1] entry hash
-- ARGV[1] fingerprint  ARGV[2] new token  ARGV[3] lease (ms)  ARGV[4] retention (ms)
-- ARGV[5] '1': take over an expired lease  ARGV[6] '1': refuse new claims (restart grace)
-- Returns {1} acquired, {2, record} completed, {3, ms left} in flight,
-- {4} mismatch, {5} refused (grace), {6} lease expired.
-- The lease deadline (field l) is on the server's clock; the key's own
-- expiry is the retention, so a dead claim stays visible as such.
redis.replicate_commands() -- TIME below; a no-op on Redis 7
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local lease = tonumber(ARGV[3])
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'l', 'r')
-- The first write of a script is the one Redis checks against maxmemory
-- (a full server refuses it: OOM, a 503), so every script writes with
-- HSET first, never with DEL or HDEL, which a full server lets through.
local function claim()
  -- over nothing, or over a claim (f t l) being taken over: no record
  -- field can be there, so nothing else needs removing
  redis.call('HSET', KEYS[1], 'f', ARGV[1], 't', ARGV[2], 'l', string.format('%.0f', now + lease))
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), lease))
  return {1}
end
if not e[1] then
  if ARGV[6] == '1' then
    return {5}
  end
  return claim()
end
if e[1] ~= ARGV[1] then
  return {4}
end
if e[4] then
  return {2, e[4]}
end
if e[2] == ARGV[2] then
  -- our own claim: this call was sent again (go-redis retries a pipeline
  -- whose connection dropped). Write it again, so a WAIT on the new
  -- connection confirms a write, and answer acquired.
  return claim()
end
-- every claim has its deadline l (a claim without one would be a dead one)
local l = tonumber(e[3]) or 0
if now < l then
  return {3, l - now}
end
if ARGV[5] == '1' then
  return claim()
end
return {6}
