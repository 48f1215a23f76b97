-- Release: delete the claim owned by ARGV[1] so a retry may run.
-- KEYS[1] entry hash   ARGV[1] token
-- Returns 1 (released, or nothing there), or 0 when another token owns the
-- key or it is completed (lease lost). A record keeps the token that
-- completed it, so r, not t, is what stops that token deleting it.
local e = redis.call('HMGET', KEYS[1], 'f', 't', 'r')
if not e[1] then
  return 1
end
if e[2] ~= ARGV[1] or e[3] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
