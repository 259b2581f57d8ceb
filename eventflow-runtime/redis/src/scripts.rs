//! The keys of a queue and the Lua scripts that change several of them atomically.

pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) delayed: String,
    pub(crate) dead: String,
}

pub(crate) const PROMOTE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local maxlen = tonumber(ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local ok, d = pcall(cjson.decode, m)
  local fields = {}
  if ok and type(d) == 'table' and type(d.e) == 'string' then
    fields = {'envelope', d.e}
    if type(d.h) == 'string' then
      table.insert(fields, 'handler')
      table.insert(fields, d.h)
    end
  else
    fields = {'raw', m}
  end
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
end
return #due
"#;

pub(crate) const SCHEDULE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
"#;

/// Schedules retries and acknowledges an entry; with ARGV[4] = `1`, only if this consumer
/// still owns it (another worker may have claimed it while this one was stopped; then that
/// one settles it). KEYS: stream, delayed. ARGV: group, consumer, id, check, then
/// (delay, member) pairs.
pub(crate) const RESCHEDULE_AND_ACK: &str = r#"
if ARGV[4] == '1' then
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
  if #owned == 0 then return 0 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 5, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i]), ARGV[i + 1])
end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
"#;

/// Acknowledges the entries of ARGV[3..] that consumer ARGV[2] of group ARGV[1] still
/// owns: a late acknowledgement of an entry another worker claimed is not applied.
pub(crate) const ACK_OWNED: &str = r#"
local acked = 0
for i = 3, #ARGV do
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #owned > 0 then
    acked = acked + redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  end
end
return acked
"#;

/// Resets the idle time of the entries of ARGV[3..] that consumer ARGV[2] of group ARGV[1]
/// still owns (its lease on them), never taking back one another worker claimed.
pub(crate) const RENEW_OWNED: &str = r#"
local renewed = 0
for i = 3, #ARGV do
  local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #owned > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
"#;

/// Grants a scheduled function's tick if it is later than the last one granted.
pub(crate) const CLAIM_TICK: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local tick = tonumber(ARGV[1])
if tick > last then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

pub(crate) const TAKE: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
"#;
