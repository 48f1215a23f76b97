-- Delete (admin purge): DEL KEYS[1], unconditionally or, with ARGV[1] = '1',
-- only while it still holds the entry the caller read, so the purge
-- deletes what it inspected and nothing that replaced it.
-- KEYS[1] entry hash  ARGV[1] '1': conditional  ARGV[2] token seen
-- ARGV[3] state seen (idempotency.State: 1 in flight, 2 completed,
-- 3 lease expired)
-- Returns 1 deleted (or nothing there, unconditionally), 0 when the entry
-- is not the one seen.
if ARGV[1] == '1' then
  redis.replicate_commands() -- TIME below; a no-op on Redis 7
  local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r', 'l')
  if not e[1] or (e[2] or '') ~= ARGV[2] then
    return 0
  end
  local state = 2
  if not e[3] then
    local tm = redis.call('TIME')
    local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
    state = 1
    if now >= (tonumber(e[4]) or 0) then
      state = 3
    end
  end
  if state ~= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
return 1
