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
-- A revocation (see REVOKE), kept until `untl` counted from `at`.
local function revoke(rk, at, untl)
  local now = at
  local cur = redis.call('GET', rk)
  if cur then
    local a, u = string.match(cur, '^(%d+):(%d+)$')
    if a and tonumber(a) > at then at = tonumber(a) end
    if u and tonumber(u) > untl then untl = tonumber(u) end
  end
  redis.call('SET', rk, string.format('%d:%d', at, untl))
  local t = untl - now
  if t < 1 then t = 1 end
  redis.call('PEXPIRE', rk, string.format('%d', t))
end
-- u64 big-endian, as the record's header holds it (exact below 2^53).
local function be8(x)
  local b = {}
  for i = 8, 1, -1 do
    b[i] = x % 256
    x = math.floor(x / 256)
  end
  return string.char(b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8])
end
local function updatettl(uk, now)
  local top = redis.call('ZRANGE', uk, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIRE', uk, ttl(tonumber(top[2]), now)) end
end
-- l, i, a: the sliding times (last seen, idle timeout, absolute
-- deadline), '' when the engine gave none.
local function write(id, d, v, u, e, now, l, i, a)
  local k = skey(id)
  redis.call('DEL', k)
  redis.call('HSET', k, 'd', d, 'v', v, 'u', u, 'e', e)
  if l ~= '' then redis.call('HSET', k, 'l', l, 'i', i, 'a', a) end
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
    updatettl(uk, now)
  end
end
"#;

/// ARGV: prefix, now, id, touch after (ms). A load that touches, in one
/// round trip: the live session's `d`, and its sliding times; if its
/// last-seen time lags `now` by more than the threshold, first moves it
/// to `now`, its expiry to `min(now + idle, absolute)` (never earlier) and
/// its version up by one, in the hash, the record's header and both
/// indexes. Returns nil if no live session, else {d, l, i, a, touched}.
pub(super) const GET_TOUCHING: &str = r#"
local now, id, after = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local k = skey(id)
local h = redis.call('HMGET', k, 'd', 'v', 'u', 'e', 'l', 'i', 'a')
if not h[1] or not h[4] or tonumber(h[4]) <= now then return false end
local touched = 0
if h[5] and h[6] and h[7] and string.byte(h[1], 1) == 1 and string.len(h[1]) >= 19
    and now - tonumber(h[5]) > after then
  local v = tonumber(h[2]) + 1
  local e = math.min(now + tonumber(h[6]), tonumber(h[7]))
  if e < tonumber(h[4]) then e = tonumber(h[4]) end
  local vs, es, ls = string.format('%d', v), string.format('%d', e), string.format('%d', now)
  local d = string.sub(h[1], 1, 1) .. be8(v) .. be8(e) .. string.sub(h[1], 18)
  redis.call('HSET', k, 'd', d, 'v', vs, 'e', es, 'l', ls)
  redis.call('PEXPIRE', k, ttl(e, now))
  redis.call('ZADD', X, es, id)
  if h[3] and h[3] ~= '' then
    local uk = ukey(h[3])
    redis.call('ZADD', uk, es, id)
    updatettl(uk, now)
  end
  h[1], h[5], touched = d, ls, 1
end
return {h[1], h[5] or '', h[6] or '', h[7] or '', touched}
"#;

/// ARGV: prefix, now, id, expected ('' = none), d, v, u, e, l, i, a.
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
write(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8], now, ARGV[9], ARGV[10], ARGV[11])
return 'written'
"#;

/// ARGV: prefix, now, old, expected, new, d, v, u, e, l, i, a.
pub(super) const RENAME: &str = r#"
local now, old, expected, new = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local h = redis.call('HMGET', skey(old), 'v', 'u', 'e')
if not h[1] or tonumber(h[3]) <= now then return 'missing' end
if h[1] ~= expected or redis.call('EXISTS', skey(new)) == 1 then return 'conflict' end
unindex(old, h[2])
redis.call('DEL', skey(old))
write(new, ARGV[6], ARGV[7], ARGV[8], ARGV[9], now, ARGV[10], ARGV[11], ARGV[12])
return 'written'
"#;

/// Put before RENAME: ARGV 13 to 15 are the old id's revocation, its key
/// ('' = none), at, until; it is recorded first, whatever the rename
/// finds: one round trip for an id change.
pub(super) const REVOKING_OLD: &str = r#"
if ARGV[13] ~= '' then revoke(ARGV[13], tonumber(ARGV[14]), tonumber(ARGV[15])) end
"#;

/// Put before DELETE: ARGV 3 to 5 are a revocation (key, at, until),
/// recorded first: one round trip for a logout.
pub(super) const REVOKING_ID: &str = r#"
revoke(ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
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
