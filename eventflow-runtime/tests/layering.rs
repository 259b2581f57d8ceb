//! The layering rules of the runtime (DESIGN.md, "Layout and layering"): imports between
//! top-level modules run one way, from the upper layers to the lower, and no circle joins
//! modules of different concepts. Read from the source: every `use crate::…` item and
//! every `crate::…` path in code (comments and doc text aside), with names re-exported at
//! the crate root traced to the module they come from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer (L2.5 is written 25, the others times ten).
const LAYERS: &[(&str, u32)] = &[
    ("util", 0),
    ("config", 0),
    ("source", 0),
    ("error", 0),
    ("event", 0),
    ("pattern", 0),
    ("retry", 10),
    ("executor", 10),
    ("delivery", 10),
    ("dead_letter", 10),
    ("telemetry", 10),
    ("schedule", 10),
    ("model", 10),
    ("backend", 20),
    ("pipeline", 25),
    ("bus", 30),
    ("store", 40),
    ("health", 40),
    ("testing", 40),
    ("macro_abi", 40),
    // The one file of `pipeline` above the bus: a pipeline run as a bus handler.
    ("pipeline/bridge", 40),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (line comments, doc comments) and string contents.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The top-level module a root-level name comes from, read from `lib.rs`'s `pub use`s.
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let code = code_of(lib);
    let mut rest = code.as_str();
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let item = rest[..end].trim();
        let module = item.split("::").next().unwrap_or("").trim().to_owned();
        if layer(&module).is_some() {
            let list = match item.find('{') {
                Some(b) => item[b + 1..].trim_end_matches('}').to_owned(),
                None => item.rsplit("::").next().unwrap_or("").to_owned(),
            };
            for n in list.split(',') {
                let n = n.trim().rsplit("::").next().unwrap_or("").trim();
                if !n.is_empty() {
                    names.insert(n.to_owned(), module.clone());
                }
            }
        }
        rest = &rest[end..];
    }
    names
}

/// The top-level module a file belongs to (`bus/deliver.rs` is in `bus`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    let file = rel.with_extension("");
    let file = file.to_str()?;
    if layer(file).is_some() {
        return Some(file.to_owned());
    }
    (name != "lib").then(|| name.to_owned())
}

/// Every (imported module, the text naming it) of a file's code.
fn imports(code: &str, roots: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |name: &str, text: String| {
        if layer(name).is_some() {
            out.push((name.to_owned(), text));
        } else if let Some(m) = roots.get(name) {
            out.push((m.clone(), text));
        }
    };
    // `use crate::{a::X, b::Y}` groups.
    let mut rest = code;
    while let Some(at) = rest.find("crate::{") {
        let inner = &rest[at + "crate::{".len()..];
        let mut depth = 1;
        let mut end = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let group = &inner[..end];
        let mut d = 0;
        let mut start = 0;
        for (i, c) in group
            .char_indices()
            .chain(std::iter::once((group.len(), ',')))
        {
            match c {
                '{' => d += 1,
                '}' => d -= 1,
                ',' if d == 0 => {
                    let part = group[start..i].trim();
                    let head = part.split("::").next().unwrap_or("").trim();
                    if !head.is_empty() {
                        push(head, format!("crate::{{{part}}}"));
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        rest = &inner[end..];
    }
    // Every other `crate::name` path.
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let line_end = tail.find(['\n', ';']).unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') && !name.is_empty()
        {
            push(&name, format!("crate::{}", tail[..line_end].trim()));
        }
        rest = &tail[name.len()..];
    }
    out
}

#[test]
fn imports_between_modules_run_from_upper_layers_to_lower() {
    let root = src();
    let lib = std::fs::read_to_string(root.join("lib.rs")).expect("lib.rs");
    let roots = root_names(&lib);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(from) = module_of(f) else { continue };
        let Some(from_layer) = layer(&from) else {
            problems.push(format!(
                "{}: module `{from}` has no layer in this test (DESIGN.md lists every module)",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).expect("a source file");
        for (to, naming) in imports(&code_of(&text), &roots) {
            if to == from || from.starts_with(&format!("{to}/")) {
                continue;
            }
            let to_layer = layer(&to).unwrap_or(0);
            if to_layer > from_layer {
                problems.push(format!(
                    "{}: `{from}` (L{}) imports `{to}` (L{}) through `{naming}`: imports run from upper layers to lower",
                    f.strip_prefix(&root).unwrap_or(f).display(),
                    from_layer as f64 / 10.0,
                    to_layer as f64 / 10.0,
                ));
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    // Modules of one layer may import each other, but never in a circle.
    for (start, _) in LAYERS {
        let mut stack = vec![(start.to_string(), vec![start.to_string()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    problems.push(format!("import circle: {} -> {start}", path.join(" -> ")));
                } else if !path.contains(next) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "the runtime's layering is broken:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_sees_imports_in_every_form() {
    let roots: BTreeMap<String, String> = [("EventBus".to_owned(), "bus".to_owned())].into();
    let code = code_of(
        "use crate::bus::Inner;\nuse crate::{store::Store, event::Envelope};\nfn f() { crate::EventBus::builder(); }\n// crate::pipeline in a comment\nlet s = \"crate::health\";\n",
    );
    let found: Vec<String> = imports(&code, &roots).into_iter().map(|(m, _)| m).collect();
    assert_eq!(found, ["store", "event", "bus", "bus"]);
}
