//! Properties that hold for any input, checked on random ones: Pointy text never panics the
//! parser and what builds prints back to the same pipeline; the router agrees with a plain
//! reference matcher; decoding an entry of arbitrary bytes never panics; retry delays follow
//! their formula.
#![allow(clippy::unwrap_used)] // test code

use std::time::Duration;

use eventflow_runtime::backend::broker::decode_entry;
use eventflow_runtime::pipeline::{
    ExecutionContext, Outcome, OutcomeExt, Pipeline, StepDef, StepOptions,
};
use eventflow_runtime::{Pattern, RetryPolicy, Router};
use proptest::prelude::*;

fn steps() -> Vec<StepDef> {
    ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| {
            StepDef::from_fn(
                name,
                StepOptions::DEFAULT,
                |ctx: ExecutionContext, n: u32| async move { (ctx, Outcome::success(n)) },
            )
        })
        .collect()
}

/// Pointy text as a small random generator writes it (valid most of the time): chains of
/// groups with `->` / `|->`, `||` groups, `* n`, and branches nested a few levels.
fn pointy(seed: u64, depth: u32) -> String {
    struct Gen(u64);
    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        }
        fn chain(&mut self, depth: u32, out: &mut String) {
            let groups = 1 + self.next(3);
            for g in 0..groups {
                if g > 0 {
                    out.push_str(if self.next(2) == 0 { " -> " } else { " |-> " });
                }
                let members = if self.next(4) == 0 { 2 } else { 1 };
                for m in 0..members {
                    if m > 0 {
                        out.push_str(" || ");
                    }
                    out.push_str(["a", "b", "c", "d"][self.next(4) as usize]);
                    if self.next(4) == 0 {
                        out.push_str(&format!(" * {}", 2 + self.next(3)));
                    }
                }
                if members == 1 && depth > 0 && self.next(3) == 0 {
                    out.push_str(" (");
                    let both = self.next(2) == 0;
                    out.push_str("0 -> ");
                    self.chain(depth - 1, out);
                    if both {
                        out.push_str(", 1 -> ");
                        self.chain(depth - 1, out);
                    }
                    out.push(')');
                }
            }
        }
    }
    let mut g = Gen(seed | 1);
    let mut out = String::new();
    if g.next(4) == 0 {
        out.push_str(&format!("@recursive-depth:{}\n", 1 + g.next(50)));
    }
    g.chain(depth, &mut out);
    out
}

/// `pattern` matches `name`, segment by segment: `*` one segment, `**` any number.
fn reference_match(pattern: &[&str], name: &[&str]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((&"**", rest)), _) => {
            reference_match(rest, name)
                || name
                    .split_first()
                    .is_some_and(|(_, n)| reference_match(pattern, n))
        }
        (Some((&"*", rest)), Some((_, n))) => reference_match(rest, n),
        (Some((p, rest)), Some((s, n))) if p == s => reference_match(rest, n),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any text: an error or a pipeline, never a panic.
    #[test]
    fn pointy_never_panics(text in "[abcd01 \\-|>()*,#@:\\n]{0,60}") {
        let _ = Pipeline::from_pointy_with(&text, steps());
    }

    /// What parses and builds prints back to Pointy that builds the same pipeline.
    #[test]
    fn pointy_that_builds_prints_back_to_the_same_pipeline(seed in any::<u64>(), depth in 0u32..4) {
        let text = pointy(seed, depth);
        if let Ok(p) = Pipeline::from_pointy_with(&text, steps()) {
            let printed = p.to_pointy();
            let again = Pipeline::from_pointy_with(&printed, steps())
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
            prop_assert_eq!(again.to_pointy(), printed.clone(), "{:?}", text);
            prop_assert_eq!(again.to_dot(), p.to_dot(), "{:?} printed as {:?}", text, printed);
        }
    }

    /// The compiled router finds exactly the patterns a plain matcher says match.
    #[test]
    fn the_router_agrees_with_a_reference_matcher(
        patterns in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", "**"]), 1..5),
            1..8,
        ),
        names in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..5),
            1..8,
        ),
    ) {
        let mut router = Router::new();
        let mut kept = Vec::new();
        for p in &patterns {
            if let Ok(pattern) = Pattern::parse(&p.join(".")) {
                router.insert(&pattern, kept.len());
                kept.push(p.clone());
            }
        }
        for name in &names {
            let mut found: Vec<usize> = router.lookup(&name.join(".")).to_vec();
            found.sort_unstable();
            found.dedup();
            let expected: Vec<usize> = kept
                .iter()
                .enumerate()
                .filter(|(_, p)| reference_match(p, name))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(found, expected, "{:?} against {:?}", name, kept);
        }
    }

    /// Arbitrary bytes as an entry: an envelope or a reason, never a panic.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(reason) = decode_entry(&text) {
            prop_assert!(reason.contains("not a valid envelope"));
        }
    }

    /// Arbitrary JSON-looking text as an entry: the same.
    #[test]
    fn decoding_json_like_text_never_panics(text in r#"[{}\[\]":,0-9a-z .\\-]{0,200}"#) {
        let _ = decode_entry(&text);
    }

    /// `delay(n) = min(max_backoff, backoff_factor * 2^(n-1))`, and with jitter a draw from
    /// `[delay/2, delay]`.
    #[test]
    fn retry_delays_follow_their_formula(
        factor in 0.0f64..100.0,
        cap in 0.0f64..1000.0,
        n in 1u32..2000,
    ) {
        let p = RetryPolicy::attempts(u32::MAX).backoff(factor, cap);
        let expected = (factor * 2f64.powi((n - 1).min(1023) as i32)).min(cap);
        let got = p.delay(n).as_secs_f64();
        prop_assert!((got - expected).abs() <= 1e-6 * expected.max(1.0), "{} vs {}", got, expected);
        let j = p.jitter(true).delay(n);
        let d = Duration::from_secs_f64(expected);
        prop_assert!(j <= d + Duration::from_micros(1) && j + Duration::from_micros(1) >= d / 2, "{:?} vs {:?}", j, d);
    }
}

/// The generator above writes text that builds most of the time, with branches among it,
/// so the round trip is tried on real pipelines.
#[test]
fn the_pointy_generator_writes_pipelines_that_build() {
    let texts: Vec<String> = (0..400u64).map(|s| pointy(s * 7919 + 1, 3)).collect();
    let built: Vec<&String> = texts
        .iter()
        .filter(|t| Pipeline::from_pointy_with(t, steps()).is_ok())
        .collect();
    assert!(
        built.len() * 2 > texts.len(),
        "{} of {} build",
        built.len(),
        texts.len()
    );
    assert!(
        built.iter().filter(|t| t.contains('(')).count() > 40,
        "few of them branch"
    );
    let p = Pipeline::from_pointy_with("a * 3 (0 -> b |-> c, 1 -> a) -> d || b", steps()).unwrap();
    assert_eq!(p.to_pointy(), "a * 3 (0 -> b |-> c, 1 -> a) -> d || b");
}
