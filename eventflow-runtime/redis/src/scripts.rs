//! The keys of a queue and the Lua scripts that change several of them atomically.

pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) delayed: String,
    pub(crate) dead: String,
    /// A stream of one tiny entry that publishers add to after each publish: idle workers
    /// block on it instead of on the queue's stream, so that a blocking read never hands
    /// them an entry whole (see [`READ`]).
    pub(crate) bell: String,
    /// This process's reply stream, where answers to its requests arrive.
    pub(crate) replies: String,
    /// The priority lanes in use (stream keys scored by priority; see [`crate::lanes`]).
    pub(crate) lanes: String,
}

/// The field an oversized entry is returned with instead of its own (its size as value).
pub(crate) const OVERSIZED_FIELD: &str = "eventflow-oversized";

/// Returns stream entries as read, except that an entry whose field names and values
/// together exceed ARGV[max] bytes comes back as [`OVERSIZED_FIELD`] with its size and at
/// most 16 of its fields, each cut to ARGV[keep] bytes: what a dead letter keeps of it.
const CAP: &str = r#"
local function capped(entries, max, keep)
  local out = {}
  for i, e in ipairs(entries) do
    local f = e[2]
    if type(f) == 'table' then
      local size = 0
      for j = 1, #f do size = size + #f[j] end
      if size > max then
        local cut = {'eventflow-oversized', tostring(size)}
        for j = 1, math.min(#f, 32), 2 do
          table.insert(cut, string.sub(f[j], 1, keep))
          table.insert(cut, string.sub(f[j + 1] or '', 1, keep))
        end
        f = cut
      end
    end
    out[i] = {e[1], f}
  end
  return out
end
"#;

/// Reads entries for a consumer (`XREADGROUP` without `BLOCK`, which a script cannot
/// do), capped as [`CAP`] says, with the last id of the bell stream, read in the same
/// atomic step: a worker that finds nothing blocks on the bell from that id, so a publish
/// after this read wakes it. KEYS: stream, bell. ARGV: group, consumer, count, cursor,
/// max, keep. Returns `{bell_id, entries}`.
pub(crate) fn read_script() -> String {
    format!(
        "{CAP}{}",
        r#"
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], ARGV[4])
local bell = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = '0-0'
if bell[1] then last = bell[1][1] end
local entries = {}
if r and r[1] then entries = capped(r[1][2], tonumber(ARGV[5]), tonumber(ARGV[6])) end
return {last, entries}
"#
    )
}

/// Reads new entries for a consumer from every lane, highest priority first (the lanes of
/// positive priority, the default stream, the negative lanes), up to ARGV[count] in all,
/// capped as [`CAP`] says, with the bell's last id as [`read_script`] does. A lane whose
/// group does not exist yet gets it (from its start). KEYS: default stream, bell, lanes.
/// ARGV: group, consumer, count, max, keep. Returns `{bell_id, {{stream, id, fields}...}}`.
pub(crate) fn read_lanes_script() -> String {
    format!(
        "{CAP}{}",
        r#"
local function xread(key, want)
  local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', key, '>')
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'NOGROUP', 1, true) then
      redis.pcall('XGROUP', 'CREATE', key, ARGV[1], '0', 'MKSTREAM')
    end
    r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', key, '>')
  end
  return r
end
local order = redis.call('ZREVRANGEBYSCORE', KEYS[3], '+inf', '(0')
table.insert(order, KEYS[1])
for _, k in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[3], '(0', '-inf')) do
  table.insert(order, k)
end
local want = tonumber(ARGV[3])
local out = {}
for _, k in ipairs(order) do
  if want <= 0 then break end
  local r = xread(k, want)
  if r and r[1] then
    for _, e in ipairs(capped(r[1][2], tonumber(ARGV[4]), tonumber(ARGV[5]))) do
      out[#out + 1] = {k, e[1], e[2]}
      want = want - 1
    end
  end
end
local bell = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = '0-0'
if bell[1] then last = bell[1][1] end
return {last, out}
"#
    )
}

/// Claims entries idle at least ARGV[idle] ms for a consumer (`XCLAIM`), capped as
/// [`CAP`] says. KEYS: stream. ARGV: group, consumer, idle, max, keep, then the ids.
pub(crate) fn claim_script() -> String {
    format!(
        "{CAP}{}",
        r#"
local ids = {}
for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], unpack(ids))
return capped(r, tonumber(ARGV[4]), tonumber(ARGV[5]))
"#
    )
}

/// Moves due delayed entries to their lane's stream (a member's `s`, when it is a lane of
/// this queue: ARGV[3] is the lanes' key prefix) or the default stream, and rings the
/// bell. KEYS: delayed, default stream, bell. ARGV: batch, maxlen, lane prefix.
pub(crate) const PROMOTE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local maxlen = tonumber(ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local ok, d = pcall(cjson.decode, m)
  local fields = {}
  local stream = KEYS[2]
  if ok and type(d) == 'table' and type(d.e) == 'string' then
    fields = {'envelope', d.e}
    if type(d.s) == 'string' and string.sub(d.s, 1, #ARGV[3]) == ARGV[3] then
      stream = d.s
    end
    if type(d.h) == 'string' then
      table.insert(fields, 'handler')
      table.insert(fields, d.h)
    end
  else
    fields = {'raw', m}
  end
  if maxlen > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', stream, '*', unpack(fields))
  end
end
if #due > 0 then pcall(redis.call, 'XADD', KEYS[3], 'MAXLEN', '1', '*', 'b', '1') end
return #due
"#;

/// Adds a delayed entry, due ARGV[1] ms from now (Redis's clock), and enters its lane
/// (ARGV[3] scored, stream ARGV[4]) among the queue's lanes unless it is the default one.
/// KEYS: delayed, lanes.
pub(crate) const SCHEDULE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[3]) ~= 0 then redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4]) end
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
