//! A pipeline written back as Pointy text ([`Pipeline::to_pointy`](super::Pipeline::to_pointy)).
//!
//! The text parses back into the same pipeline: the main line from the first step, each
//! step's retries as `* n`, parallel groups with `||`, `|->` where a step takes the output
//! of the step before, and branches as `(d -> ...)`, a jump back to a step of the main line
//! as its name alone.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::graph::{Node, NodeKind};
use super::step::StepDef;

/// Writes `nodes` (as a built pipeline holds them) as Pointy text.
pub(super) fn to_pointy(name: &str, nodes: &[Node], max_steps: usize) -> String {
    let mut out = String::new();
    if name != "pipeline" {
        let _ = writeln!(out, "@name:{name}");
    }
    if max_steps != 100 {
        let _ = writeln!(out, "@recursive-depth:{max_steps}");
    }
    let mut main = HashSet::new();
    let mut at = (!nodes.is_empty()).then_some(0);
    while let Some(i) = at {
        if !main.insert(i) {
            break;
        }
        at = nodes[i].next;
    }
    if !nodes.is_empty() {
        chain(nodes, 0, &main, &mut out);
    }
    out
}

fn chain(nodes: &[Node], start: usize, main: &HashSet<usize>, out: &mut String) {
    let mut at = Some(start);
    let mut first = true;
    let mut seen = HashSet::new();
    while let Some(i) = at {
        if !seen.insert(i) {
            break;
        }
        let n = &nodes[i];
        if !first {
            out.push_str(if n.pipe { " |-> " } else { " -> " });
        }
        first = false;
        group(n, out);
        if !n.branches.is_empty() {
            out.push_str(" (");
            for (k, (d, target)) in n.branches.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{d} -> ");
                match &nodes[*target].kind {
                    // A jump back to a step of the main line is its name alone.
                    NodeKind::Single(s) if main.contains(target) => out.push_str(&s.name),
                    _ => chain(nodes, *target, main, out),
                }
            }
            out.push(')');
        }
        at = n.next;
    }
}

fn step(s: &StepDef, out: &mut String) {
    out.push_str(&s.name);
    if s.options.retry.max_attempts > 1 {
        let _ = write!(out, " * {}", s.options.retry.max_attempts);
    }
}

fn group(n: &Node, out: &mut String) {
    match &n.kind {
        NodeKind::Single(s) | NodeKind::ForEach(s) => step(s, out),
        NodeKind::Parallel(members) => {
            for (k, s) in members.iter().enumerate() {
                if k > 0 {
                    out.push_str(" || ");
                }
                step(s, out);
            }
        }
    }
}
