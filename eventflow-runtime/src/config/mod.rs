//! Configuration as data: the settings types of the bus, its handlers, pipeline steps,
//! executors, retries and the health checker deserialize (serde), so they can come from a
//! TOML or JSON file, or from a dict-like value (earnorm's `EVENT_BUS_CONFIG`, volnux's
//! `executor_config` and `retry_policy` dicts).
//!
//! Read them with [`from_toml`], [`from_json`] or [`from_value`]: a key a type does not
//! know is an error naming it and the nearest known one (earnorm's `backoff` is not
//! silently ignored: "unknown key `backoff` ...; did you mean `backoff_factor`?"), and a
//! value of the wrong type names the field. Durations are written `"30s"`, `"500ms"`,
//! `"2m"`, `"1h"` (or a number of seconds).
//!
//! ```
//! use eventflow_runtime::config::from_toml;
//! use eventflow_runtime::RetryPolicy;
//! let err = from_toml::<RetryPolicy>("max_attempts = 3\nbackoff = 2.0").unwrap_err();
//! assert!(err.to_string().contains("unknown key `backoff`"), "{err}");
//! assert!(err.to_string().contains("did you mean `backoff_factor`?"), "{err}");
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;

pub mod duration;

/// A configuration that could not be read: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Reads a `T` from TOML text.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| ConfigError::new(explain(&e.to_string())))?;
    serde_path_to_error::deserialize(de).map_err(|e| located(e.path(), &e.inner().to_string()))
}

/// Reads a `T` from JSON text.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| located(e.path(), &e.inner().to_string()))
}

/// Reads a `T` from a JSON value (a dict built in code).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| located(e.path(), &e.inner().to_string()))
}

/// The error of the value at `path`, naming that path.
fn located(path: &serde_path_to_error::Path, message: &str) -> ConfigError {
    let path = path.to_string();
    let message = redact_credentials(&explain(message));
    if path.is_empty() || path == "." {
        ConfigError::new(message)
    } else {
        ConfigError::new(format!("`{path}`: {message}"))
    }
}

/// `scheme://user:password@host` shown as `scheme://***@host`, so that an error quoting a
/// configuration line never shows a credential.
fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '/')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(a) => {
                out.push_str("***");
                rest = &tail[a..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`"),
/// rewritten to name the key and the nearest known one.
pub(crate) fn explain(message: &str) -> String {
    let Some(at) = message.find("unknown field `") else {
        return message.to_owned();
    };
    let rest = &message[at + "unknown field `".len()..];
    let Some(end) = rest.find('`') else {
        return message.to_owned();
    };
    let key = &rest[..end];
    let known: Vec<&str> = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .take_while(|s| !s.contains('\n'))
        .collect();
    let hint = match nearest(key, &known) {
        Some(n) => format!("; did you mean `{n}`?"),
        None => String::new(),
    };
    let (head, tail) = message.split_at(at);
    let line_end = tail.find('\n').unwrap_or(tail.len());
    format!(
        "{head}unknown key `{key}` (known keys: {}){hint}{}",
        known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", "),
        &tail[line_end..]
    )
}

/// The known key closest to `key`: one it begins or ends (`backoff` for
/// `backoff_factor`), else the fewest edits, if at most a third of the key.
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key_l = key.to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| {
        let k = k.to_ascii_lowercase();
        k.starts_with(&key_l) || key_l.starts_with(&k) || k.ends_with(&key_l)
    }) {
        return Some(k);
    }
    known
        .iter()
        .map(|k| (edits(&key_l, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= key.len().div_ceil(3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Parses `"30s"`, `"500ms"`, `"1.5s"`, `"2m"`, `"1h"`, `"250us"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{t}` has no unit: write `30s`, `500ms`, `2m` or `1h`"))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("`{t}` is not a duration: write `30s`, `500ms`, `2m` or `1h`"))?;
    let secs = match unit.trim() {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`: use `us`, `ms`, `s`, `m` or `h`"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{t}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("3 days")
                .unwrap_err()
                .contains("unknown unit")
        );
    }

    #[test]
    fn credentials_in_messages_are_redacted() {
        assert_eq!(
            redact_credentials("url = \"redis://:s3cr3t@host:6379/0\" is bad"),
            "url = \"redis://***@host:6379/0\" is bad"
        );
        assert_eq!(
            redact_credentials("see https://example.com/x"),
            "see https://example.com/x"
        );
    }

    #[test]
    fn the_nearest_key_is_named() {
        let known = ["max_attempts", "backoff_factor", "max_backoff", "jitter"];
        assert_eq!(nearest("backoff", &known), Some("backoff_factor"));
        assert_eq!(nearest("max_atempts", &known), Some("max_attempts"));
        assert_eq!(nearest("colour", &known), None);
    }
}
