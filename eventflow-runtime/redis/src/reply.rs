//! Reading Redis replies.

use std::collections::HashMap;

use redis::Value;

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// A flat `[k1, v1, k2, v2]` array or a map, as a lookup by key.
pub(crate) fn pairs(v: &Value) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for kv in items.chunks(2) {
                if let [k, v] = kv
                    && let Some(k) = text(k)
                {
                    out.insert(k, v.clone());
                }
            }
        }
        Value::Map(items) => {
            for (k, v) in items {
                if let Some(k) = text(k) {
                    out.insert(k, v.clone());
                }
            }
        }
        _ => {}
    }
    out
}

/// One stream entry: its stream (a lane), id and fields (`None` when the entry was
/// trimmed away).
pub(crate) struct Entry {
    pub(crate) stream: String,
    pub(crate) id: String,
    pub(crate) fields: Option<HashMap<String, Value>>,
}

impl Entry {
    /// The entry's key among those of every lane (ids are unique within a stream only).
    pub(crate) fn key(&self) -> String {
        entry_key(&self.stream, &self.id)
    }
}

/// An entry's key among those of every lane.
pub(crate) fn entry_key(stream: &str, id: &str) -> String {
    format!("{stream} {id}")
}

/// The entries of `[id, fields]` pairs read from `stream`.
pub(crate) fn entries_of(list: &Value, stream: &str) -> Vec<Entry> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if !parts.is_empty() => Some(Entry {
                stream: stream.to_owned(),
                id: text(&parts[0])?,
                fields: parts.get(1).filter(|f| !matches!(f, Value::Nil)).map(pairs),
            }),
            _ => None,
        })
        .collect()
}

/// The entries of `[stream, id, fields]` triples (the lanes' read).
pub(crate) fn lane_entries_of(list: &Value) -> Vec<Entry> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() >= 2 => Some(Entry {
                stream: text(&parts[0])?,
                id: text(&parts[1])?,
                fields: parts.get(2).filter(|f| !matches!(f, Value::Nil)).map(pairs),
            }),
            _ => None,
        })
        .collect()
}
