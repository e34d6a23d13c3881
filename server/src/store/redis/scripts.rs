//! The Lua scripts behind the Redis store's atomic writes.
//!
//! Redis runs a script alone, so each one is a transaction: preconditions
//! are checked and every key written, or nothing is. Records arrive from
//! Rust already serialised; a script only splices in the numbers it assigns
//! (versions, sequence numbers, revisions) and never re-encodes a flag
//! definition, so JSON passes through byte for byte. Version and run
//! bookkeeping lives in small `meta` hashes, so no script has to parse JSON.
//!
//! Every key shares the `{prefix}` hash tag: on a Redis Cluster they all
//! live in one slot, which multi-key scripts need.

/// Applies a commit. ARGV: prefix, change count, versions kept per flag
/// (0: all), then nine values per change: environment, flag, expect (`any`/`absent`/`v`), expected version,
/// kind (`put`/`delete`/`oset`/`oclear`), body (flag record without its
/// version, or the override), version entry without its version, audit
/// entry without seq and version, the flag key as a JSON string.
///
/// Returns `{"conflict", index, found}` or `{"ok", seq, version, …, "|",
/// environment, revision, …}` (version -1: none).
pub(super) const COMMIT: &str = r#"
local p = ARGV[1]
local n = tonumber(ARGV[2])
local keep = tonumber(ARGV[3])
local function live(env, flag)
  local meta = redis.call('HGET', p .. ':meta:' .. env, flag)
  if not meta then return nil end
  local version, alive = string.match(meta, '^(%d+):(%d)$')
  if alive == '1' then return tonumber(version) end
  return nil
end
for i = 0, n - 1 do
  local b = 4 + i * 9
  local expect = ARGV[b + 2]
  if expect ~= 'any' then
    local found = live(ARGV[b], ARGV[b + 1])
    if (expect == 'absent' and found ~= nil) or (expect == 'v' and found ~= tonumber(ARGV[b + 3])) then
      return {'conflict', tostring(i), tostring(found or -1)}
    end
  end
end
local out = {'ok'}
local order, flags, overrides = {}, {}, {}
for i = 0, n - 1 do
  local b = 4 + i * 9
  local env, flag, kind = ARGV[b], ARGV[b + 1], ARGV[b + 4]
  if not flags[env] then
    order[#order + 1] = env
    flags[env], overrides[env] = {}, {}
  end
  local version = -1
  if kind == 'put' or kind == 'delete' then
    local meta = redis.call('HGET', p .. ':meta:' .. env, flag)
    version = 1
    if meta then version = tonumber(string.match(meta, '^(%d+)')) + 1 end
    local alive = '1'
    if kind == 'delete' then alive = '0' end
    redis.call('HSET', p .. ':meta:' .. env, flag, version .. ':' .. alive)
    local record = '{"version":' .. version .. ',' .. ARGV[b + 5]
    redis.call('HSET', p .. ':flags:' .. env, flag, record)
    local versions = p .. ':versions:' .. env .. ':' .. flag
    redis.call('RPUSH', versions, '{"version":' .. version .. ',' .. ARGV[b + 6])
    if keep > 0 then redis.call('LTRIM', versions, -keep, -1) end
    table.insert(flags[env], ARGV[b + 8] .. ':' .. record)
  elseif kind == 'oset' then
    redis.call('HSET', p .. ':overrides:' .. env, flag, ARGV[b + 5])
    table.insert(overrides[env], ARGV[b + 8] .. ':' .. ARGV[b + 5])
  else
    redis.call('HDEL', p .. ':overrides:' .. env, flag)
    table.insert(overrides[env], ARGV[b + 8] .. ':null')
  end
  local seq = redis.call('INCR', p .. ':audit:seq')
  local shown = 'null'
  if version >= 0 then shown = tostring(version) end
  redis.call('ZADD', p .. ':audit', seq, '{"seq":' .. seq .. ',"version":' .. shown .. ',' .. ARGV[b + 7])
  out[#out + 1] = tostring(seq)
  out[#out + 1] = tostring(version)
end
out[#out + 1] = '|'
for _, env in ipairs(order) do
  local revision = redis.call('INCR', p .. ':rev:' .. env)
  redis.call('SADD', p .. ':environments', env)
  redis.call('PUBLISH', p .. ':changes:' .. env, '{"revision":' .. revision .. ',"flags":{' ..
    table.concat(flags[env], ',') .. '},"overrides":{' .. table.concat(overrides[env], ',') .. '}}')
  out[#out + 1] = env
  out[#out + 1] = tostring(revision)
end
return out
"#;

/// Writes a ramp run with compare-and-set and fencing. ARGV: prefix,
/// environment, ramp field, expected "run\nseq" (empty: none), new
/// "run\nseq", run JSON, decision record JSON (empty: none), fence lease
/// (empty: none), fence token, audit count, outbox count, message JSON
/// prefix (`{"environment":…,"ramp":…,"run":` + run + `}` is appended),
/// then audit entries without seq and outbox deliveries without id.
///
/// Returns `{"fenced", current}`, `{"conflict", found}` or `{"ok", revision}`.
pub(super) const WRITE_RAMP: &str = r#"
local p, env, field = ARGV[1], ARGV[2], ARGV[3]
if ARGV[8] ~= '' then
  local current = tonumber(redis.call('GET', p .. ':fence:' .. ARGV[8]) or '0')
  if current ~= tonumber(ARGV[9]) then return {'fenced', tostring(current)} end
end
local found = redis.call('HGET', p .. ':rampmeta', field) or ''
if found ~= ARGV[4] then return {'conflict', found} end
redis.call('HSET', p .. ':ramps', field, ARGV[6])
redis.call('HSET', p .. ':rampmeta', field, ARGV[5])
if ARGV[7] ~= '' then redis.call('RPUSH', p .. ':decisions:' .. field, ARGV[7]) end
local audits, deliveries = tonumber(ARGV[10]), tonumber(ARGV[11])
for i = 1, audits do
  local seq = redis.call('INCR', p .. ':audit:seq')
  redis.call('ZADD', p .. ':audit', seq, '{"seq":' .. seq .. ',' .. ARGV[12 + i])
end
for i = 1, deliveries do
  local id = redis.call('INCR', p .. ':outbox:seq')
  redis.call('HSET', p .. ':outbox', id, '{"id":' .. id .. ',' .. ARGV[12 + audits + i])
end
local revision = redis.call('INCR', p .. ':ramps:rev')
redis.call('PUBLISH', p .. ':ramps', '{"revision":' .. revision .. ',' .. ARGV[12] .. ARGV[6] .. '}')
return {'ok', tostring(revision)}
"#;

/// Takes or renews a lease. ARGV: prefix, lease name, holder, ttl (ms).
/// Returns the fencing token, or nil while someone else holds it. A new
/// holder gets a new, larger token.
pub(super) const ACQUIRE: &str = r#"
local key = ARGV[1] .. ':lease:' .. ARGV[2]
local current = redis.call('GET', key)
if current then
  local holder, token = string.match(current, '^(.*)|(%d+)$')
  if holder == ARGV[3] then
    redis.call('PEXPIRE', key, ARGV[4])
    return token
  end
  return false
end
local token = redis.call('INCR', ARGV[1] .. ':fence:' .. ARGV[2])
redis.call('SET', key, ARGV[3] .. '|' .. token, 'PX', ARGV[4])
return tostring(token)
"#;

/// Gives up a lease if `holder` has it. ARGV: prefix, lease name, holder.
pub(super) const RELEASE: &str = r#"
local key = ARGV[1] .. ':lease:' .. ARGV[2]
local current = redis.call('GET', key)
if current and string.match(current, '^(.*)|%d+$') == ARGV[3] then redis.call('DEL', key) end
return 1
"#;
