//! Free-form headers an event carries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Free-form string headers carried by an event and inherited by the events its handlers
/// publish (tenant, user, request id, trace context). Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Option<Arc<BTreeMap<String, String>>>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers(None)
    }

    /// The value of a header.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    /// Sets a header.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(self.0.get_or_insert_with(Default::default)).insert(key.into(), value.into());
    }

    /// Adds every header of `other` that is not already set here.
    pub fn inherit(&mut self, other: &Headers) {
        if let Some(theirs) = &other.0 {
            if self.0.is_none() {
                self.0 = Some(theirs.clone());
                return;
            }
            for (k, v) in theirs.iter() {
                if self.get(k).is_none() {
                    self.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Iterates over the headers in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Removes a header, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let map = self.0.as_mut()?;
        if !map.contains_key(key) {
            return None;
        }
        Arc::make_mut(map).remove(key)
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k, v);
        }
        h
    }
}
