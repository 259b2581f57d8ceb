//! Priority lanes: a stream per priority, read highest first.
//!
//! An event of priority 0 (the default) goes to the queue's stream, `QUEUE:stream`; one of
//! priority `p` goes to `QUEUE:stream:p{p}` (priorities are clamped to
//! `-MAX_LANE..=MAX_LANE`, so beyond them events share the end lanes), and the lane is
//! entered in the sorted set `QUEUE:lanes` (scored by its priority) in the same round
//! trip. A worker's read takes entries from the lanes highest first, then the default
//! stream, then the negative lanes, in one script: an event in a higher lane is read
//! before any of a lower one, and within a lane in publish order. Every lane has the same
//! consumer group (created by the read that first meets it), acknowledgements, claims
//! and leases as the default stream.

use redis::Value;

use crate::backend::Shared;
use crate::reply::text;

/// The highest lane (and minus the lowest): priorities beyond share the end lanes.
pub const MAX_LANE: i32 = 100;

/// The lane of a priority.
pub(crate) fn lane_of(priority: i32) -> i32 {
    priority.clamp(-MAX_LANE, MAX_LANE)
}

impl Shared {
    /// The stream of the lane of `priority`.
    pub(crate) fn lane_stream(&self, priority: i32) -> std::borrow::Cow<'_, str> {
        match lane_of(priority) {
            0 => std::borrow::Cow::Borrowed(&self.keys.stream),
            lane => std::borrow::Cow::Owned(format!("{}:stream:p{lane}", self.cfg.queue)),
        }
    }

    /// Whether `key` names a stream of this queue (the default one or a lane), so that a
    /// key read from Redis (a delayed entry's) is never taken for another's.
    pub(crate) fn is_lane(&self, key: &str) -> bool {
        key == self.keys.stream || key.starts_with(&self.lane_prefix())
    }

    /// What every lane's stream key begins with, beside the default stream's.
    pub(crate) fn lane_prefix(&self) -> String {
        format!("{}:stream:p", self.cfg.queue)
    }

    /// Every lane's stream, highest priority first, the default stream among them.
    pub(crate) async fn lanes<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<Vec<String>, redis::RedisError> {
        let reply: Value = redis::cmd("ZREVRANGE")
            .arg(&self.keys.lanes)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await?;
        let mut scored: Vec<(f64, String)> = Vec::new();
        let items: Vec<Value> = match reply {
            Value::Array(items) => items,
            Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => Vec::new(),
        };
        for kv in items.chunks(2) {
            if let [k, s] = kv
                && let (Some(k), Some(s)) = (text(k), score(s))
                && self.is_lane(&k)
            {
                scored.push((s, k));
            }
        }
        scored.push((0.0, self.keys.stream.clone()));
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.dedup_by(|a, b| a.1 == b.1);
        Ok(scored.into_iter().map(|(_, k)| k).collect())
    }
}

fn score(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_beyond_the_range_share_the_end_lanes() {
        assert_eq!(lane_of(0), 0);
        assert_eq!(lane_of(10), 10);
        assert_eq!(lane_of(i32::MAX), MAX_LANE);
        assert_eq!(lane_of(i32::MIN), -MAX_LANE);
    }
}
