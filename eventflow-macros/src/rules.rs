//! The rules of names and patterns. This file is the same, byte for byte, in
//! `eventflow-runtime/src/pattern/rules.rs` and `eventflow-macros/src/rules.rs` (a test of
//! the runtime compares them): the macros check names with it at compile time, the runtime
//! at run time.

/// Checks an event name (`wildcards = false`) or a pattern (`wildcards = true`). The same
/// function, word for word, checks names at compile time in `eventflow-macros` and at run
/// time in `eventflow-runtime`; both run the cases of `eventflow-runtime/src/pattern/rules.tsv`.
pub(crate) fn check_segments(text: &str, wildcards: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    for (i, seg) in text.split('.').enumerate() {
        if seg.is_empty() {
            return Err(format!(
                "segment {} is empty (two dots, or a leading or trailing dot)",
                i + 1
            ));
        }
        if wildcards && (seg == "*" || seg == "**") {
            continue;
        }
        if let Some(c) = seg
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
        {
            return Err(if c == '*' && !wildcards {
                "`*` is a wildcard: an event name has none (patterns do)".to_owned()
            } else if c == '*' {
                format!(
                    "`{seg}` mixes `*` with other characters; a wildcard must be a whole segment (`*` or `**`)"
                )
            } else if c.is_ascii_uppercase() {
                format!("`{seg}` has an upper-case letter; segments are lower case `[a-z0-9_-]`")
            } else if wildcards {
                format!("`{c}` is not allowed in `{seg}`: segments are `[a-z0-9_-]`, `*` or `**`")
            } else {
                format!("`{c}` is not allowed in `{seg}`: segments are `[a-z0-9_-]`")
            });
        }
    }
    Ok(())
}

/// The cases of `rules.tsv`: (is a pattern, text, expected error or `None`).
#[cfg(test)]
pub(crate) fn rule_cases(table: &str) -> Vec<(bool, String, Option<String>)> {
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.splitn(3, '\t');
            let kind = cols.next().unwrap_or_default();
            let text = cols.next().unwrap_or_default().to_owned();
            let expected = cols.next().unwrap_or_default();
            (
                kind == "pattern",
                text,
                (expected != "ok").then(|| expected.to_owned()),
            )
        })
        .collect()
}
