//! The Lua scripts of the Redis backend: each change to a session and its
//! indexes runs as one script on the server, so no client ever reads,
//! decides, then writes.

/// Lua shared by the scripts. ARGV[1] is always the key prefix.
pub(super) const LIB: &str = r#"
local P = ARGV[1]
local X = P .. 'x'
local function skey(id) return P .. 's:' .. id end
local function ukey(u) return P .. 'u:' .. u end
local function unindex(id, u)
  redis.call('ZREM', X, id)
  if u and u ~= '' then redis.call('ZREM', ukey(u), id) end
end
local function ttl(at, now)
  local t = at - now
  if t < 1 then t = 1 end
  return t
end
local function write(id, d, v, u, e, now)
  local k = skey(id)
  redis.call('DEL', k)
  redis.call('HSET', k, 'd', d, 'v', v, 'u', u, 'e', e)
  redis.call('PEXPIRE', k, ttl(tonumber(e), now))
  redis.call('ZADD', X, e, id)
  if u ~= '' then
    local uk = ukey(u)
    -- Upkeep: members whose session Redis already expired (an expired
    -- session still stored keeps its entry until the sweeper deletes both).
    for _, m in ipairs(redis.call('ZRANGE', uk, '-inf', now, 'BYSCORE')) do
      if redis.call('EXISTS', skey(m)) == 0 then redis.call('ZREM', uk, m) end
    end
    redis.call('ZADD', uk, e, id)
    local top = redis.call('ZRANGE', uk, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', uk, ttl(tonumber(top[2]), now))
  end
end
"#;

/// ARGV: prefix, now, id, expected ('' = none), d, v, u, e.
pub(super) const PUT: &str = r#"
local now, id, expected = tonumber(ARGV[2]), ARGV[3], ARGV[4]
local h = redis.call('HMGET', skey(id), 'v', 'u', 'e')
if not h[1] then
  if expected ~= '' then return 'missing' end
else
  local live = tonumber(h[3]) > now
  if expected ~= '' and not live then return 'missing' end
  if expected == '' and live then return 'conflict' end
  if expected ~= '' and h[1] ~= expected then return 'conflict' end
  unindex(id, h[2])
end
write(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8], now)
return 'written'
"#;

/// ARGV: prefix, now, old, expected, new, d, v, u, e.
pub(super) const RENAME: &str = r#"
local now, old, expected, new = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local h = redis.call('HMGET', skey(old), 'v', 'u', 'e')
if not h[1] or tonumber(h[3]) <= now then return 'missing' end
if h[1] ~= expected or redis.call('EXISTS', skey(new)) == 1 then return 'conflict' end
unindex(old, h[2])
redis.call('DEL', skey(old))
write(new, ARGV[6], ARGV[7], ARGV[8], ARGV[9], now)
return 'written'
"#;

/// ARGV: prefix, id. Returns 1 if a session was deleted.
pub(super) const DELETE: &str = r#"
local id = ARGV[2]
local h = redis.call('HMGET', skey(id), 'v', 'u')
unindex(id, h[2])
if not h[1] then return 0 end
redis.call('DEL', skey(id))
return 1
"#;

/// ARGV: prefix, now, id. Deletes the session if it has expired by `now`;
/// drops its index entries if Redis already expired it. Returns 1 if a
/// stored session was deleted.
pub(super) const DELETE_IF_EXPIRED: &str = r#"
local now, id = tonumber(ARGV[2]), ARGV[3]
local h = redis.call('HMGET', skey(id), 'v', 'u', 'e')
if not h[1] then
  redis.call('ZREM', X, id)
  return 0
end
if tonumber(h[3]) > now then return 0 end
unindex(id, h[2])
redis.call('DEL', skey(id))
return 1
"#;

/// KEYS[1]: the revocation's key; ARGV: at (the engine's now), until (ms).
/// Keeps the latest `at` and the furthest `until`; Redis drops the key at
/// `until`, counted from the engine's clock (a TTL, not a server time).
pub(super) const REVOKE: &str = r#"
local now = tonumber(ARGV[1])
local at, untl = now, tonumber(ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur then
  local a, u = string.match(cur, '^(%d+):(%d+)$')
  if a and tonumber(a) > at then at = tonumber(a) end
  if u and tonumber(u) > untl then untl = tonumber(u) end
end
redis.call('SET', KEYS[1], string.format('%d:%d', at, untl))
local ttl = untl - now
if ttl < 1 then ttl = 1 end
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return 1
"#;
