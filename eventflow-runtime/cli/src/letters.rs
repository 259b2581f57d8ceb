//! `eventflow dead-letters ...`.

use clap::{Args, Subcommand};
use eventflow_runtime::{DeadLetter, DeadLetterQuery, EventBus, Redelivery};
use serde_json::{Value, json};

use crate::out::{self, cell};
use crate::{Ctx, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum LettersCommand {
    /// Lists dead letters, newest page first as the store gives them.
    #[command(
        after_help = "Example:\n  eventflow --queue orders dead-letters list --handler billing --search declined"
    )]
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Shows one dead letter with its envelope.
    #[command(after_help = "Example:\n  eventflow --queue orders dead-letters show 5f0c...e1")]
    Show {
        /// The dead letter's id.
        id: String,
    },
    /// Delivers dead letters again to the handler that gave up on them.
    #[command(
        after_help = "Examples:\n  eventflow --queue orders dead-letters retry 5f0c...e1\n  eventflow --queue orders dead-letters retry --all --handler billing"
    )]
    Retry(Target),
    /// Removes dead letters for good.
    #[command(
        after_help = "Examples:\n  eventflow --queue orders dead-letters remove 5f0c...e1\n  eventflow --queue orders dead-letters remove --all --event invoice.due"
    )]
    Remove(Target),
}

/// Which letters: by handler, event name, text in the error.
#[derive(Args, Debug, Default)]
pub(crate) struct Filter {
    /// Only this handler's.
    #[arg(long)]
    handler: Option<String>,
    /// Only letters of this event name.
    #[arg(long)]
    event: Option<String>,
    /// Only letters whose error contains this text (ignoring case).
    #[arg(long)]
    search: Option<String>,
}

impl Filter {
    fn query(&self) -> DeadLetterQuery {
        let mut q = DeadLetterQuery::new().limit(eventflow_runtime::dead_letter::MAX_PAGE);
        if let Some(h) = &self.handler {
            q = q.handler(h);
        }
        if let Some(e) = &self.event {
            q = q.event(e);
        }
        if let Some(s) = &self.search {
            q = q.search(s);
        }
        q
    }
}

/// One letter by id, or `--all` that the filter selects.
#[derive(Args, Debug)]
pub(crate) struct Target {
    /// The dead letter's id.
    id: Option<String>,
    /// Every letter the filter selects.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: Filter,
}

fn parse_id(id: &str) -> Result<uuid::Uuid, Failure> {
    uuid::Uuid::parse_str(id).map_err(|_| Failure::usage(format!("`{id}` is not a dead letter id")))
}

/// Up to `max` letters the filter selects, page after page.
async fn collect(bus: &EventBus, filter: &Filter, max: usize) -> Result<Vec<DeadLetter>, Failure> {
    let mut q = filter.query();
    let mut out = Vec::new();
    loop {
        let page = bus.dead_letters_page(&q).await.map_err(Failure::redis)?;
        out.extend(page.letters);
        match page.next {
            Some(c) if out.len() < max => q.cursor = Some(c),
            _ => break,
        }
    }
    out.truncate(max);
    Ok(out)
}

fn summary(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "handler": l.handler,
        "event": l.envelope.name.as_str(),
        "error": l.error,
        "attempts": l.attempts,
        "failed_at_ms": out::ms(l.failed_at),
    })
}

pub(crate) async fn run(ctx: &Ctx, cmd: LettersCommand) -> Result<i32, Failure> {
    let bus = ctx.bus().await?;
    match cmd {
        LettersCommand::List { filter, limit } => {
            let letters = collect(&bus, &filter, limit.max(1)).await?;
            if ctx.json {
                out::json(&json!({ "letters": letters.iter().map(summary).collect::<Vec<_>>() }));
            } else if letters.is_empty() {
                println!("No dead letters.");
            } else {
                let rows: Vec<Vec<String>> = letters
                    .iter()
                    .map(|l| {
                        vec![
                            l.id.to_string(),
                            out::time(out::ms(l.failed_at)),
                            cell(&l.handler, 30),
                            cell(l.envelope.name.as_str(), 30),
                            l.attempts.to_string(),
                            cell(&l.error, 60),
                        ]
                    })
                    .collect();
                out::table(
                    &["id", "failed at", "handler", "event", "attempts", "error"],
                    &rows,
                );
            }
            Ok(0)
        }
        LettersCommand::Show { id } => {
            let id = parse_id(&id)?;
            let Some(l) = bus.dead_letter(id).await.map_err(Failure::redis)? else {
                return Err(Failure::not_found(format!("no dead letter {id}")));
            };
            let payload = l.envelope.payload_json().unwrap_or(Value::Null);
            let mut v = summary(&l);
            v["envelope"] = json!({
                "id": l.envelope.id,
                "name": l.envelope.name.as_str(),
                "payload": payload,
                "correlation_id": l.envelope.correlation_id,
                "causation_id": l.envelope.causation_id,
                "priority": l.envelope.priority,
                "timestamp_ms": out::ms(l.envelope.timestamp),
            });
            if ctx.json {
                out::json(&v);
            } else {
                println!("id:        {}", l.id);
                println!("handler:   {}", l.handler);
                println!("event:     {} ({})", l.envelope.name, l.envelope.id);
                println!("attempts:  {}", l.attempts);
                println!("failed at: {}", out::time(out::ms(l.failed_at)));
                println!("error:     {}", l.error);
                println!(
                    "payload:\n{}",
                    serde_json::to_string_pretty(&v["envelope"]["payload"]).unwrap_or_default()
                );
            }
            Ok(0)
        }
        LettersCommand::Retry(t) => act(ctx, &bus, t, Action::Retry).await,
        LettersCommand::Remove(t) => act(ctx, &bus, t, Action::Remove).await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Remove,
}

/// Retries or removes one letter or every one the filter selects, with a progress bar for
/// people when there are many.
async fn act(ctx: &Ctx, bus: &EventBus, t: Target, action: Action) -> Result<i32, Failure> {
    let ids: Vec<uuid::Uuid> = match (&t.id, t.all) {
        (Some(id), false) => vec![parse_id(id)?],
        (None, true) => collect(bus, &t.filter, usize::MAX)
            .await?
            .iter()
            .map(|l| l.id)
            .collect(),
        (Some(_), true) => return Err(Failure::usage("give an id or --all, not both")),
        (None, false) => {
            return Err(Failure::usage(
                "give a dead letter's id, or --all (with a filter)",
            ));
        }
    };
    let single = !t.all;
    let bar = (!ctx.json && ids.len() > 20).then(|| {
        let b = indicatif::ProgressBar::new(ids.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let (mut done, mut failed, mut missing) = (0u64, 0u64, 0u64);
    let mut errors = Vec::new();
    for id in &ids {
        let r = match action {
            Action::Retry => bus.retry_dead_letter(*id).await.map(|r| match r {
                Redelivery::Done(o) => o.succeeded(),
                Redelivery::Queued => true,
            }),
            Action::Remove => bus.remove_dead_letter(*id).await,
        };
        match r {
            Ok(true) => done += 1,
            Ok(false) if action == Action::Remove => missing += 1,
            Ok(false) => failed += 1,
            Err(eventflow_runtime::EventError::DeadLetterNotFound(_)) => missing += 1,
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(e.to_string());
                }
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let verb = if action == Action::Retry {
        "retried"
    } else {
        "removed"
    };
    if ctx.json {
        out::json(&json!({ verb: done, "failed": failed, "not_found": missing, "errors": errors }));
    } else {
        println!("{verb} {done}, failed {failed}, not found {missing}");
        for e in &errors {
            eprintln!("  {e}");
        }
    }
    if single && missing > 0 {
        return Err(Failure::not_found(format!("no dead letter {}", ids[0])));
    }
    Ok(if failed > 0 { 4 } else { 0 })
}
