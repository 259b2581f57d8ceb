//! The JSON API under `/api`, and the queries the pages share with it.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::routing::{get, post};
use eventflow_runtime::{DeadLetter, DeadLetterQuery, HealthChecker, Redelivery};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::guard::ApiError;
use crate::state::State;

/// The most letters one bulk retry or removal acts on.
pub(crate) const BULK_MAX: usize = 100_000;

pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/handlers", get(handlers))
        .route("/api/dead-letters", get(list_letters).delete(remove_all))
        .route("/api/dead-letters/retry", post(retry_all))
        .route("/api/dead-letters/{id}", get(one_letter).delete(remove_one))
        .route("/api/dead-letters/{id}/retry", post(retry_one))
        .route("/api/delayed", get(crate::queue::delayed))
        .route(
            "/api/delayed/{id}",
            axum::routing::delete(crate::queue::cancel_delayed),
        )
        .route("/api/workers", get(crate::queue::workers))
        .route("/api/schedules", get(schedules))
        .route("/api/pipelines", get(pipelines))
        .fallback(|| async { ApiError::not_found("no such page") })
}

pub(crate) fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The filter of a dead-letter list or bulk action, as the query string gives it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filter {
    pub(crate) handler: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) q: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

impl Filter {
    /// The store query, or why the request is bad.
    pub(crate) fn query(&self) -> Result<DeadLetterQuery, ApiError> {
        let mut q = DeadLetterQuery::new();
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        if let Some(h) = given(&self.handler) {
            q = q.handler(h);
        }
        if let Some(e) = given(&self.event) {
            q = q.event(e);
        }
        if let Some(t) = given(&self.q) {
            q = q.search(t);
        }
        if let Some(l) = given(&self.limit) {
            let n: usize = l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("limit `{l}` is not a number")))?;
            if !(1..=eventflow_runtime::dead_letter::MAX_PAGE).contains(&n) {
                return Err(ApiError::bad_request(format!(
                    "limit {n} is out of range: 1 to {}",
                    eventflow_runtime::dead_letter::MAX_PAGE
                )));
            }
            q = q.limit(n);
        } else {
            q = q.limit(50);
        }
        if let Some(c) = given(&self.cursor) {
            // Every store's cursors are numbers (a position, Redis's HSCAN cursor).
            if c.len() > 20 || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::bad_request(format!(
                    "cursor `{}` is malformed",
                    cut(&c, 40)
                )));
            }
            q = q.cursor(c);
        }
        Ok(q)
    }
}

/// `text` cut at `max` characters, saying so.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!(
            "{}... (cut at {max} of {} characters)",
            &text[..at],
            text.chars().count()
        ),
    }
}

pub(crate) fn parse_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::bad_request(format!("`{}` is not a dead letter id", cut(id, 40))))
}

/// A letter in a list.
pub(crate) fn summary(l: &DeadLetter) -> Value {
    json!({
        "id": l.id,
        "handler": l.handler,
        "event": l.envelope.name.as_str(),
        "event_id": l.envelope.id,
        "error": cut(&l.error, 500),
        "error_kind": format!("{:?}", l.error_kind),
        "attempts": l.attempts,
        "first_failed_at_ms": ms(l.first_failed_at),
        "failed_at_ms": ms(l.failed_at),
    })
}

/// A letter with its envelope, the payload cut at `max` characters.
pub(crate) fn detail(l: &DeadLetter, max: usize) -> Value {
    let e = &l.envelope;
    let payload = match e.payload_json() {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()),
        Err(err) => format!("(the payload cannot be shown as JSON: {err})"),
    };
    let headers: serde_json::Map<String, Value> = e
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut v = summary(l);
    v["error"] = Value::String(cut(&l.error, max));
    v["envelope"] = json!({
        "id": e.id,
        "name": e.name.as_str(),
        "payload": cut(&payload, max),
        "timestamp_ms": ms(e.timestamp),
        "attempt": e.attempt,
        "priority": e.priority,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "trace": e.trace.map(|t| t.to_traceparent()),
        "headers": headers,
    });
    v
}

pub(crate) async fn overview_data(state: &State) -> Value {
    let bus = &state.bus;
    let report = HealthChecker::new(bus).check().await;
    let m = bus.metrics();
    json!({
        "backend": bus.backend_name(),
        "reachable": report.backend.reachable,
        "health": {
            "status": format!("{:?}", report.status),
            "reasons": report.reasons,
        },
        "published": m.published,
        "in_flight": m.in_flight,
        "lag": report.backend.lag,
        "pending": report.backend.pending,
        "dead_letters": report.backend.dead_letters,
        "success_rate": m.success_rate(),
        "per_second": state.samples(),
    })
}

async fn overview(AxState(state): AxState<State>) -> Json<Value> {
    Json(overview_data(&state).await)
}

pub(crate) fn handlers_data(state: &State) -> Vec<Value> {
    let metrics = state.bus.metrics();
    state
        .bus
        .handler_info()
        .into_iter()
        .map(|h| {
            let m = metrics.handlers.iter().find(|m| m.handler == h.name);
            let lat = m.and_then(|m| m.attempt_duration);
            json!({
                "name": h.name,
                "pattern": h.pattern,
                "executor": format!("{:?}", h.executor),
                "retry": {
                    "max_attempts": h.retry.max_attempts,
                    "backoff_factor": h.retry.backoff_factor,
                    "max_backoff": h.retry.max_backoff,
                    "backoff_step": h.retry.backoff_step,
                    "jitter": h.retry.jitter,
                },
                "timeout_ms": h.timeout.map(|t| t.as_millis() as u64),
                "concurrency": h.concurrency,
                "priority": h.priority,
                "batched": h.batched,
                "delivered": m.map_or(0, |m| m.delivered),
                "succeeded": m.map_or(0, |m| m.succeeded),
                "failed_attempts": m.map_or(0, |m| m.failed_attempts),
                "retried": m.map_or(0, |m| m.retried),
                "dead_lettered": m.map_or(0, |m| m.dead_lettered),
                "filtered": m.map_or(0, |m| m.filtered),
                "success_rate": m.map_or(1.0, |m| m.success_rate()),
                "p50_ms": lat.as_ref().map(|l| l.p50.as_secs_f64() * 1e3),
                "p99_ms": lat.as_ref().map(|l| l.p99.as_secs_f64() * 1e3),
            })
        })
        .collect()
}

async fn handlers(AxState(state): AxState<State>) -> Json<Value> {
    Json(json!({ "handlers": handlers_data(&state) }))
}

/// One page of letters the filter selects.
pub(crate) async fn letters_page(
    state: &State,
    filter: &Filter,
) -> Result<eventflow_runtime::DeadLetterPage, ApiError> {
    let q = filter.query()?;
    state.bus.dead_letters_page(&q).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("cursor") {
            ApiError::bad_request(text)
        } else {
            ApiError::unavailable(text)
        }
    })
}

async fn list_letters(
    AxState(state): AxState<State>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let page = letters_page(&state, &filter).await?;
    Ok(Json(json!({
        "letters": page.letters.iter().map(summary).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

async fn one_letter(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    match state
        .bus
        .dead_letter(id)
        .await
        .map_err(ApiError::unavailable)?
    {
        Some(l) => Ok(Json(detail(&l, state.max_payload_chars))),
        None => Err(ApiError::not_found(format!("no dead letter {id}"))),
    }
}

/// Retries one letter: what became of it.
pub(crate) async fn retry_letter(state: &State, id: uuid::Uuid) -> Result<Value, ApiError> {
    match state.bus.retry_dead_letter(id).await {
        Ok(Redelivery::Queued) => Ok(json!({ "id": id, "outcome": "queued" })),
        Ok(Redelivery::Done(o)) if o.succeeded() => {
            Ok(json!({ "id": id, "outcome": "succeeded", "attempts": o.attempts }))
        }
        Ok(Redelivery::Done(o)) => Ok(json!({
            "id": id,
            "outcome": "failed",
            "attempts": o.attempts,
            "error": o.error().map(|e| e.to_string()),
        })),
        Err(eventflow_runtime::EventError::DeadLetterNotFound(_)) => {
            Err(ApiError::not_found(format!("no dead letter {id}")))
        }
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

async fn retry_one(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(retry_letter(&state, id).await?))
}

async fn remove_one(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    match state.bus.remove_dead_letter(id).await {
        Ok(true) => Ok(Json(json!({ "id": id, "removed": true }))),
        Ok(false) => Err(ApiError::not_found(format!("no dead letter {id}"))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

/// The ids of every letter the filter selects (at most [`BULK_MAX`]), read before any is
/// acted on, so that acting does not move the pages under the reading.
async fn matching_ids(state: &State, filter: &Filter) -> Result<Vec<uuid::Uuid>, ApiError> {
    let mut q = filter
        .query()?
        .limit(eventflow_runtime::dead_letter::MAX_PAGE);
    q.cursor = None;
    let mut ids = Vec::new();
    loop {
        let page = state
            .bus
            .dead_letters_page(&q)
            .await
            .map_err(ApiError::unavailable)?;
        ids.extend(page.letters.iter().map(|l| l.id));
        match page.next {
            Some(next) if ids.len() < BULK_MAX => q.cursor = Some(next),
            _ => break,
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(BULK_MAX);
    Ok(ids)
}

async fn retry_all(
    AxState(state): AxState<State>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let ids = matching_ids(&state, &filter).await?;
    let (mut retried, mut failed, mut gone) = (0u64, 0u64, 0u64);
    for id in ids {
        match retry_letter(&state, id).await {
            Ok(v) if v["outcome"] == "failed" => failed += 1,
            Ok(_) => retried += 1,
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => gone += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(Json(
        json!({ "retried": retried, "failed_again": failed, "gone": gone }),
    ))
}

async fn remove_all(
    AxState(state): AxState<State>,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    let ids = matching_ids(&state, &filter).await?;
    let mut removed = 0u64;
    for id in ids {
        if state
            .bus
            .remove_dead_letter(id)
            .await
            .map_err(ApiError::unavailable)?
        {
            removed += 1;
        }
    }
    Ok(Json(json!({ "removed": removed })))
}

pub(crate) fn schedules_data(state: &State) -> Vec<Value> {
    state
        .bus
        .schedule_stats()
        .into_iter()
        .map(|s| {
            let outcome = match (&s.last_error, s.last_tick_ms) {
                (_, None) => "not run yet",
                (Some(_), _) => "failed",
                (None, Some(_)) => "succeeded",
            };
            json!({
                "name": s.name,
                "schedule": s.schedule,
                "next_tick_ms": s.next_tick_ms,
                "last_outcome": outcome,
                "last_error": s.last_error,
                "succeeded": s.succeeded,
                "failed": s.failed,
                "claimed_elsewhere": s.claimed_elsewhere,
                "unclaimed": s.unclaimed,
                "last_tick_ms": s.last_tick_ms,
            })
        })
        .collect()
}

async fn schedules(AxState(state): AxState<State>) -> Json<Value> {
    Json(json!({ "schedules": schedules_data(&state) }))
}

async fn pipelines(AxState(state): AxState<State>) -> Json<Value> {
    Json(json!({ "pipelines": state.pipelines }))
}
