//! Pointy, volnux's small text language for pipelines (`A -> B || C`, branches, retries), unchanged.
//!
//! ```text
//! # comments run to the end of the line
//! @recursive-depth:20                 # the step limit of a run (default 100)
//! validate |-> payment * 3 (0 -> refund, 1 -> confirm |-> notify)
//! ```
//!
//! | syntax | meaning |
//! | --- | --- |
//! | `name` | a step: a registered event's name (or one given to `from_pointy_with`) |
//! | `A -> B` | B runs after A succeeds, with A's input |
//! | `A \|-> B` | B runs after A succeeds, with A's output |
//! | `A \|\| B` | a parallel group: A and B run at once on the same input |
//! | `A * 3` | A is tried up to 3 times (its retry policy's `max_attempts`), waiting its policy's backoff between attempts (for a step without retry settings: 0.5 s, then 1 s, doubling up to 60 s) |
//! | `A (0 -> B, 1 -> C, 3 -> D)` | branches: 0 on failure (with A's input), 1 on success (with A's output), other numbers for `goto` (with the goto's result); each branch is a chain |
//! | `A (3 -> X)` where `X` is a step named earlier on the main line, alone | a jump back to that step (a loop, bounded by the step limit) |
//!
//! Errors say the line and column, and name an unknown step. Branches nest at most
//! [`MAX_POINTY_NESTING`] levels deep.

use std::collections::HashMap;

use super::builder::finish;
use super::graph::{Node, NodeKind, node};
use super::{PipelineError, StepDef, registered};

/// Pointy text that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("Pointy syntax error at line {line}, column {column}: {message}")]
pub struct PointyError {
    /// From 1.
    pub line: usize,
    /// From 1.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Int(u32),
    Arrow,
    PipeArrow,
    Par,
    Star,
    Open,
    Close,
    Comma,
    Directive(String, String),
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, PointyError> {
    let mut out = Vec::new();
    for (li, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let (line_no, column) = (li + 1, i + 1);
            let err = |message: String| PointyError {
                line: line_no,
                column,
                message,
            };
            let push = |out: &mut Vec<Token>, tok| {
                out.push(Token {
                    tok,
                    line: line_no,
                    column,
                })
            };
            match c {
                '#' => break,
                c if c.is_whitespace() => i += 1,
                '@' => {
                    let rest: String = chars[i + 1..].iter().collect();
                    let rest = rest.split('#').next().unwrap_or("").trim().to_owned();
                    let Some((k, v)) = rest.split_once(':') else {
                        return Err(err(format!("a directive is `@name:value`, not `@{rest}`")));
                    };
                    push(&mut out, Tok::Directive(k.trim().into(), v.trim().into()));
                    break;
                }
                '-' if chars.get(i + 1) == Some(&'>') => {
                    push(&mut out, Tok::Arrow);
                    i += 2;
                }
                '|' if chars.get(i + 1) == Some(&'-') && chars.get(i + 2) == Some(&'>') => {
                    push(&mut out, Tok::PipeArrow);
                    i += 3;
                }
                '|' if chars.get(i + 1) == Some(&'|') => {
                    push(&mut out, Tok::Par);
                    i += 2;
                }
                '*' => {
                    push(&mut out, Tok::Star);
                    i += 1;
                }
                '(' => {
                    push(&mut out, Tok::Open);
                    i += 1;
                }
                ')' => {
                    push(&mut out, Tok::Close);
                    i += 1;
                }
                ',' => {
                    push(&mut out, Tok::Comma);
                    i += 1;
                }
                c if c.is_ascii_digit() => {
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let s: String = chars[start..i].iter().collect();
                    let n = s
                        .parse()
                        .map_err(|_| err(format!("`{s}` is too large a number")))?;
                    push(&mut out, Tok::Int(n));
                }
                c if c.is_alphanumeric() || c == '_' => {
                    let start = i;
                    while i < chars.len()
                        && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.'))
                    {
                        i += 1;
                    }
                    push(&mut out, Tok::Name(chars[start..i].iter().collect()));
                }
                other => return Err(err(format!("unexpected `{other}`"))),
            }
        }
    }
    let (line, column) = out.last().map_or((1, 1), |t| (t.line, t.column + 1));
    out.push(Token {
        tok: Tok::End,
        line,
        column,
    });
    Ok(out)
}

struct Term {
    name: String,
    line: usize,
    column: usize,
    attempts: Option<u32>,
    branches: Vec<(u32, Chain)>,
}

/// A chain: groups with, for each after the first, whether it takes the output (`|->`).
type Chain = Vec<(Vec<Term>, bool)>;

/// How deeply branches may nest: `A (0 -> B (0 -> C ...))` at most this many levels. The
/// parser and the builder recurse once per level, so the bound keeps them off the end of
/// a thread's stack, whatever text they are given.
pub const MAX_POINTY_NESTING: usize = 64;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Branch lists open around the current token.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn error(&self, message: impl Into<String>) -> PointyError {
        let t = self.peek();
        PointyError {
            line: t.line,
            column: t.column,
            message: message.into(),
        }
    }

    fn chain(&mut self) -> Result<Chain, PointyError> {
        let mut chain = vec![(self.group()?, false)];
        loop {
            let pipe = match self.peek().tok {
                Tok::Arrow => false,
                Tok::PipeArrow => true,
                _ => return Ok(chain),
            };
            self.bump();
            chain.push((self.group()?, pipe));
        }
    }

    fn group(&mut self) -> Result<Vec<Term>, PointyError> {
        let mut terms = vec![self.term()?];
        while self.peek().tok == Tok::Par {
            self.bump();
            terms.push(self.term()?);
        }
        Ok(terms)
    }

    fn term(&mut self) -> Result<Term, PointyError> {
        let t = self.bump();
        let Tok::Name(name) = t.tok else {
            self.pos -= 1;
            return Err(self.error("expected a step name"));
        };
        let mut term = Term {
            name,
            line: t.line,
            column: t.column,
            attempts: None,
            branches: Vec::new(),
        };
        if self.peek().tok == Tok::Star {
            self.bump();
            match self.bump().tok {
                Tok::Int(n) if n >= 1 => term.attempts = Some(n),
                _ => {
                    self.pos -= 1;
                    return Err(self.error("`*` takes a number of attempts, at least 1"));
                }
            }
        }
        if self.peek().tok == Tok::Open {
            if self.depth >= MAX_POINTY_NESTING {
                return Err(self.error(format!(
                    "branches nest more than {MAX_POINTY_NESTING} levels deep"
                )));
            }
            self.bump();
            self.depth += 1;
            loop {
                let d = match self.bump().tok {
                    Tok::Int(d) => d,
                    _ => {
                        self.pos -= 1;
                        return Err(self.error("a branch starts with its descriptor: `0 -> step`"));
                    }
                };
                if self.bump().tok != Tok::Arrow {
                    self.pos -= 1;
                    return Err(self.error("expected `->` after the descriptor"));
                }
                if term.branches.iter().any(|(x, _)| *x == d) {
                    return Err(self.error(format!("descriptor {d} is given twice")));
                }
                term.branches.push((d, self.chain()?));
                match self.bump().tok {
                    Tok::Comma => continue,
                    Tok::Close => {
                        self.depth -= 1;
                        break;
                    }
                    _ => {
                        self.pos -= 1;
                        return Err(self.error("expected `,` or `)`"));
                    }
                }
            }
        }
        Ok(term)
    }
}

struct Builder {
    defs: HashMap<String, StepDef>,
    nodes: Vec<Node>,
    /// Main-line nodes by label, for jumps back.
    main: HashMap<String, usize>,
    /// Where each node is written (` at line L, column C`), by node index.
    at: Vec<String>,
}

impl Builder {
    fn step(&self, t: &Term) -> Result<StepDef, PipelineError> {
        let def = match self.defs.get(&t.name) {
            Some(d) => d.clone(),
            None => match registered(&t.name) {
                Some(r) => (r.make)(),
                None => {
                    return Err(PipelineError::UnknownStep {
                        name: t.name.clone(),
                        at: format!(" at line {}, column {}", t.line, t.column),
                    });
                }
            },
        };
        Ok(match t.attempts {
            Some(n) => {
                let mut o = def.options.clone();
                o.retry.max_attempts = n;
                def.with_options(o)
            }
            None => def,
        })
    }

    /// Adds a chain; returns its first node.
    fn chain(
        &mut self,
        chain: &Chain,
        first_pipe: bool,
        main: bool,
    ) -> Result<usize, PipelineError> {
        let mut first = None;
        let mut prev: Option<usize> = None;
        for (i, (group, pipe)) in chain.iter().enumerate() {
            let pipe = if i == 0 { first_pipe } else { *pipe };
            let idx = self.group(group, pipe)?;
            if main {
                self.main
                    .entry(self.nodes[idx].label.to_string())
                    .or_insert(idx);
            }
            if let Some(p) = prev {
                self.nodes[p].next = Some(idx);
            }
            first.get_or_insert(idx);
            prev = Some(idx);
            let with_branches: Vec<&Term> =
                group.iter().filter(|t| !t.branches.is_empty()).collect();
            if group.len() > 1 && !with_branches.is_empty() {
                let t = with_branches[0];
                return Err(PipelineError::Invalid(format!(
                    "line {}, column {}: branches go on a whole step, not on a member of a parallel group",
                    t.line, t.column
                )));
            }
            if let Some(t) = with_branches.first() {
                for (d, sub) in &t.branches {
                    let target = self.branch_target(sub, *d)?;
                    self.nodes[idx].branches.insert(*d, target);
                }
            }
        }
        first.ok_or_else(|| PipelineError::Invalid("an empty chain".into()))
    }

    fn branch_target(&mut self, sub: &Chain, d: u32) -> Result<usize, PipelineError> {
        // A lone name of the main line, with nothing else: a jump back to it.
        if let [(group, _)] = sub.as_slice()
            && let [t] = group.as_slice()
            && t.attempts.is_none()
            && t.branches.is_empty()
            && let Some(&existing) = self.main.get(&t.name)
        {
            return Ok(existing);
        }
        self.chain(sub, d != 0, false)
    }

    fn group(&mut self, group: &[Term], pipe: bool) -> Result<usize, PipelineError> {
        let at = group
            .first()
            .map(|t| format!(" at line {}, column {}", t.line, t.column))
            .unwrap_or_default();
        let located = |e: PipelineError| match e {
            PipelineError::Invalid(m) => PipelineError::Invalid(format!("{m}{at}")),
            other => other,
        };
        let n = if let [t] = group {
            let s = self.step(t)?;
            node(s.name.to_string(), NodeKind::Single(s), pipe).map_err(located)?
        } else {
            let steps = group
                .iter()
                .map(|t| self.step(t))
                .collect::<Result<Vec<_>, _>>()?;
            let label = steps
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
                .join(" || ");
            node(label, NodeKind::Parallel(steps), pipe).map_err(located)?
        };
        self.nodes.push(n);
        self.at.push(at);
        Ok(self.nodes.len() - 1)
    }
}

pub(super) fn build(text: &str, steps: Vec<StepDef>) -> Result<super::Pipeline, PipelineError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let mut max_steps = 100usize;
    let mut name = "pipeline".to_owned();
    while let Tok::Directive(k, v) = p.peek().tok.clone() {
        match k.as_str() {
            "recursive-depth" => {
                max_steps = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    p.error(format!(
                        "`@recursive-depth` takes a positive number, not `{v}`"
                    ))
                })?;
            }
            "name" => name = v,
            other => return Err(p.error(format!("unknown directive `@{other}`")).into()),
        }
        p.bump();
    }
    let chain = p.chain()?;
    if p.peek().tok != Tok::End {
        return Err(p.error("expected `->`, `|->`, `||` or the end").into());
    }
    let mut b = Builder {
        defs: steps.into_iter().map(|s| (s.name.to_string(), s)).collect(),
        nodes: Vec::new(),
        main: HashMap::new(),
        at: Vec::new(),
    };
    b.chain(&chain, true, true)?;
    finish(name, b.nodes, max_steps, Vec::new(), &b.at)
}
