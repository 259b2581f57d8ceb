//! Compile-time checks of names, patterns and durations. The runtime applies the same
//! rules (`eventflow_runtime::pattern`) to names given at run time.

/// Checks an event name (`wildcards = false`) or a pattern (`wildcards = true`).
pub(crate) fn check(text: &str, wildcards: bool) -> Result<(), String> {
    crate::rules::check_segments(text, wildcards)
}

/// `UserCreated` -> `user_created`, `HTTPRequest` -> `http_request`.
pub(crate) fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if i > 0
                && (prev_lower || (next_lower && chars[i - 1].is_uppercase()))
                && !out.ends_with('_')
            {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `"5s"`, `"250ms"`, `"1.5s"`, `"2m"`, `"1h"` into nanoseconds.
/// A size: `"256MiB"`, `"1GiB"`, `"100MB"`, `"4096"` (bytes), in bytes (the runtime's
/// `executor::limits::parse_bytes`, checked at compile time).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| "not a size such as \"256MiB\"".to_owned())?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "unknown size unit `{other}`: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err("a size of at least one byte".to_owned());
    }
    Ok(bytes as u64)
}

pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "" => return Err("the unit is missing: write for example \"5s\" or \"250ms\"".into()),
        other => return Err(format!("unknown unit `{other}`: use ns, us, ms, s, m or h")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{num}` is not a number"))?;
    let nanos = n * scale;
    if !(nanos >= 1.0 && nanos < u64::MAX as f64) {
        return Err("it must be greater than zero".into());
    }
    Ok(nanos as u64)
}

#[cfg(test)]
mod rule_tests {
    #[test]
    fn names_and_patterns_follow_the_table_of_rules() {
        let table = include_str!("../../eventflow-runtime/src/pattern/rules.tsv");
        for (is_pattern, text, expected) in crate::rules::rule_cases(table) {
            let got = super::check(&text, is_pattern);
            assert_eq!(
                got.err(),
                expected,
                "checking `{text}` (pattern: {is_pattern})"
            );
        }
    }
}
