//! Serde for durations in configuration: `"30s"`, `"500ms"`, or a number of seconds.
//! Use with `#[serde(with = "eventflow_runtime::config::duration")]`, or
//! [`option`] for an `Option<Duration>`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Text(String),
    Seconds(f64),
}

fn read(w: Written) -> Result<Duration, String> {
    match w {
        Written::Text(t) => super::parse_duration(&t),
        Written::Seconds(s) => {
            Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a duration in seconds"))
        }
    }
}

/// Writes a duration as text (`"1.5s"`).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs_f64()))
}

/// Reads `"30s"`, `"500ms"`, ... or a number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    read(Written::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// The same for an `Option<Duration>` (use with `#[serde(default, with = "...::option")]`).
pub mod option {
    use super::*;

    /// Writes a duration as text, or nothing.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Written>::deserialize(d)? {
            Some(w) => read(w).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
