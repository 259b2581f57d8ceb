//! Models as JSON documents, and the names of their tables.

use serde_json::Value;

use super::StoreError;
use crate::model::Model;

/// Checks that `s` may be part of a table name.
pub(super) fn check_identifier(s: &str) -> Result<(), StoreError> {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::database_msg(format!(
            "`{s}` cannot be part of a table name: use letters, digits and `_`"
        )))
    }
}

/// The table of a model: `<prefix>m_<name>` with every other character made `_`.
pub(super) fn table_name(prefix: &str, model: &str) -> String {
    let name: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}m_{name}")
}

pub(super) fn to_doc<M: Model>(m: &M) -> Result<Value, StoreError> {
    serde_json::to_value(m).map_err(|source| StoreError::Serde {
        model: M::NAME,
        source,
    })
}

pub(super) fn from_doc<M: Model>(doc: Value, id: i64) -> Result<M, StoreError> {
    let mut m: M = serde_json::from_value(doc).map_err(|source| StoreError::Serde {
        model: M::NAME,
        source,
    })?;
    m.set_id(id);
    Ok(m)
}

/// The top-level fields whose values differ.
pub(super) fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        _ if old != new => vec![String::new()],
        _ => Vec::new(),
    }
}
