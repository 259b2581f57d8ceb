//! Event names, handler patterns, and the router compiled from them.
//!
//! A **name** is one or more dot-separated segments of `[a-z0-9_-]`:
//! `user.created`, `order.payment.completed`.
//!
//! A **pattern** is segment-aware:
//!
//! | segment | matches |
//! | --- | --- |
//! | `created` | exactly that segment |
//! | `*` | exactly one segment |
//! | `**` | any number of segments, zero included |
//!
//! So `user.*` matches `user.created` but **not** `user.profile.updated`, and `user.**`
//! matches both (and `user` itself). This differs from Python's `fnmatch`, used by earnorm,
//! where `*` also matches dots: `user.*` there matches `user.profile.updated`. When porting
//! earnorm handlers, write `user.**` where the Python pattern relied on that.
//!
//! ```
//! use eventflow_runtime::Pattern;
//! let p = Pattern::parse("user.*").unwrap();
//! assert!(p.matches("user.created"));
//! assert!(!p.matches("user.profile.updated"));
//! assert!(Pattern::parse("user.**").unwrap().matches("user.profile.updated"));
//! ```

mod rules;

use rules::check_segments;
use std::collections::HashMap;
use std::fmt;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::{Arc, RwLock};

use crate::util::FirstKey;

/// Checks an event name; the error says what is wrong.
pub fn validate_name(name: &str) -> Result<(), String> {
    check_segments(name, false)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Star,
    GlobStar,
}

/// A parsed handler pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Box<str>,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_segments(text, true)?;
        let segments = text
            .split('.')
            .map(|s| match s {
                "*" => Segment::Star,
                "**" => Segment::GlobStar,
                lit => Segment::Literal(lit.into()),
            })
            .collect();
        Ok(Pattern {
            text: text.into(),
            segments,
        })
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `name` matches. (The router answers the same question for many patterns at
    /// once; this is the reference it is tested against.)
    pub fn matches(&self, name: &str) -> bool {
        fn go(pat: &[Segment], name: &[&str]) -> bool {
            match pat.split_first() {
                None => name.is_empty(),
                Some((Segment::GlobStar, rest)) => (0..=name.len()).any(|k| go(rest, &name[k..])),
                Some((seg, rest)) => match name.split_first() {
                    None => false,
                    Some((first, tail)) => {
                        let ok = match seg {
                            Segment::Literal(l) => &**l == *first,
                            _ => true,
                        };
                        ok && go(rest, tail)
                    }
                },
            }
        }
        let parts: Vec<&str> = name.split('.').collect();
        go(&self.segments, &parts)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Default)]
struct Node {
    literal: FastMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    globstar: Option<Box<Node>>,
    targets: Vec<usize>,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], target: usize) {
        match segments.split_first() {
            None => self.targets.push(target),
            Some((Segment::Literal(l), rest)) => self
                .literal
                .entry(l.clone())
                .or_default()
                .insert(rest, target),
            Some((Segment::Star, rest)) => self
                .star
                .get_or_insert_with(Default::default)
                .insert(rest, target),
            Some((Segment::GlobStar, rest)) => self
                .globstar
                .get_or_insert_with(Default::default)
                .insert(rest, target),
        }
    }

    fn collect<'a>(&self, segs: std::str::Split<'a, char>, out: &mut Vec<usize>) {
        if let Some(g) = &self.globstar {
            // `**` consumes zero, one, ... or all remaining segments.
            let mut rest = segs.clone();
            loop {
                g.collect(rest.clone(), out);
                if rest.next().is_none() {
                    break;
                }
            }
        }
        let mut next = segs.clone();
        match next.next() {
            None => out.extend_from_slice(&self.targets),
            Some(seg) => {
                if let Some(child) = self.literal.get(seg) {
                    child.collect(next.clone(), out);
                }
                if let Some(star) = &self.star {
                    star.collect(next, out);
                }
            }
        }
    }
}

/// Patterns compiled for lookup: an exact-name map plus a segment trie for wildcards.
///
/// A lookup walks the name's segments through the trie, so its cost depends on the name's
/// length and the wildcards that apply to it, not on how many patterns are registered.
/// Each target is an index given at [`insert`](Router::insert); a lookup returns them
/// sorted and without duplicates. Results are cached per name (up to 4,096 names).
pub struct Router {
    exact: FastMap<Box<str>, Vec<usize>>,
    trie: Node,
    has_wildcards: bool,
    /// The targets of the first name looked up, found without the cache's lock: most
    /// buses see one name far more than the others.
    first: FirstKey<Box<str>, Arc<[usize]>>,
    cache: RwLock<FastMap<Box<str>, Arc<[usize]>>>,
}

const CACHE_LIMIT: usize = 4096;

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Router {
            exact: FastMap::default(),
            trie: Node::default(),
            has_wildcards: false,
            first: FirstKey::default(),
            cache: RwLock::new(FastMap::default()),
        }
    }

    /// Adds a pattern that routes to `target`.
    pub fn insert(&mut self, pattern: &Pattern, target: usize) {
        if pattern.is_exact() {
            self.exact
                .entry(pattern.as_str().into())
                .or_default()
                .push(target);
        } else {
            self.has_wildcards = true;
            self.trie.insert(&pattern.segments, target);
        }
        self.first = FirstKey::default();
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }

    /// The targets whose patterns match `name`, computed without the cache.
    pub fn lookup_uncached(&self, name: &str) -> Vec<usize> {
        let mut out = Vec::new();
        if let Some(t) = self.exact.get(name) {
            out.extend_from_slice(t);
        }
        if self.has_wildcards {
            self.trie.collect(name.split('.'), &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The targets whose patterns match `name`.
    pub fn lookup(&self, name: &str) -> Arc<[usize]> {
        let first = || (name.into(), self.lookup_uncached(name).into());
        if let Some(targets) = self.first.get(name, first) {
            return targets.clone();
        }
        if let Ok(cache) = self.cache.read()
            && let Some(hit) = cache.get(name)
        {
            return hit.clone();
        }
        let found: Arc<[usize]> = self.lookup_uncached(name).into();
        if let Ok(mut cache) = self.cache.write()
            && cache.len() < CACHE_LIMIT
        {
            cache.insert(name.into(), found.clone());
        }
        found
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("user.created").is_ok());
        assert!(validate_name("order.payment-2.completed_ok").is_ok());
        for bad in [
            "",
            "user..created",
            ".user",
            "user.",
            "User.created",
            "user.*",
            "user created",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn pattern_syntax() {
        for bad in [
            "",
            "user..created",
            "user.*x",
            "user.x*",
            "***",
            "user.**.",
            "USER",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = Pattern::parse("user.*x").unwrap_err();
        assert!(err.contains("whole segment"), "{err}");
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let p = Pattern::parse("user.*").unwrap();
        assert!(p.matches("user.created"));
        assert!(
            !p.matches("user.profile.updated"),
            "unlike fnmatch, `*` stops at dots"
        );
        assert!(!p.matches("user"));
        assert!(!p.matches("order.created"));
    }

    #[test]
    fn globstar_matches_any_number_of_segments() {
        let p = Pattern::parse("user.**").unwrap();
        assert!(p.matches("user"));
        assert!(p.matches("user.created"));
        assert!(p.matches("user.profile.updated"));
        assert!(!p.matches("users.created"));
        let mid = Pattern::parse("a.**.z").unwrap();
        assert!(mid.matches("a.z"));
        assert!(mid.matches("a.b.c.z"));
        assert!(!mid.matches("a.b.c"));
        assert!(Pattern::parse("**").unwrap().matches("anything.at.all"));
    }

    #[test]
    fn router_agrees_with_patterns() {
        let patterns = [
            "user.created",
            "user.*",
            "user.**",
            "*.created",
            "**",
            "a.**.z",
            "a.**.**.z",
            "order.*.completed",
            "**.completed",
            "user.created",
        ];
        let mut router = Router::new();
        let parsed: Vec<Pattern> = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        for (i, p) in parsed.iter().enumerate() {
            router.insert(p, i);
        }
        let names = [
            "user",
            "user.created",
            "user.profile.updated",
            "order.created",
            "a.z",
            "a.b.z",
            "a.b.c.z",
            "order.payment.completed",
            "order.payment.failed",
            "x",
        ];
        for name in names {
            let expected: Vec<usize> = (0..parsed.len())
                .filter(|&i| parsed[i].matches(name))
                .collect();
            assert_eq!(router.lookup_uncached(name), expected, "name {name}");
            assert_eq!(&*router.lookup(name), &expected[..], "cached, name {name}");
            assert_eq!(
                &*router.lookup(name),
                &expected[..],
                "cached again, name {name}"
            );
        }
    }
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn names_and_patterns_follow_the_table_of_rules() {
        for (is_pattern, text, expected) in rules::rule_cases(include_str!("rules.tsv")) {
            let got = if is_pattern {
                Pattern::parse(&text).map(|_| ())
            } else {
                validate_name(&text)
            };
            assert_eq!(
                got.err(),
                expected,
                "checking `{text}` (pattern: {is_pattern})"
            );
        }
    }

    #[test]
    fn the_macros_check_with_the_same_rules() {
        assert_eq!(
            include_str!("rules.rs"),
            include_str!("../../../eventflow-macros/src/rules.rs"),
            "the two copies of the name rules differ"
        );
    }
}
