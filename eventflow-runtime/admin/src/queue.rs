//! The API of the queue's waiting events and its workers: `/api/delayed`, `/api/workers`.

use axum::Json;
use axum::extract::{Path, Query, State as AxState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{cut, ms};
use crate::guard::ApiError;
use crate::state::State;

/// The page of `/api/delayed`, as the query string gives it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Paging {
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// A page of delayed events, or why the request is bad.
pub(crate) async fn delayed_page(state: &State, paging: &Paging) -> Result<Value, ApiError> {
    let limit = match paging
        .limit
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=eventflow_runtime::backend::MAX_DELAYED_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit `{}` is not a number from 1 to {}",
                    cut(l, 20),
                    eventflow_runtime::backend::MAX_DELAYED_PAGE
                )));
            }
        },
    };
    let cursor = paging
        .cursor
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if let Some(c) = cursor
        && (c.len() > 20 || !c.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(ApiError::bad_request(format!(
            "cursor `{}` is malformed",
            cut(c, 40)
        )));
    }
    let page = state
        .bus
        .delayed(cursor, limit)
        .await
        .map_err(ApiError::unavailable)?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "event": e.name,
                "due_ms": ms(e.due),
                "handler": e.handler,
                "priority": e.priority,
            })
        })
        .collect();
    Ok(json!({ "delayed": events, "next": page.next }))
}

pub(crate) async fn delayed(
    AxState(state): AxState<State>,
    Query(paging): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(delayed_page(&state, &paging).await?))
}

pub(crate) async fn cancel_delayed(
    AxState(state): AxState<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request(format!("`{}` is not an event id", cut(&id, 40))))?;
    match state.bus.cancel_delayed(id).await {
        Ok(true) => Ok(Json(json!({ "id": id, "cancelled": true }))),
        Ok(false) => Err(ApiError::not_found(format!("no delayed event {id}"))),
        Err(e) => Err(ApiError::unavailable(e)),
    }
}

pub(crate) async fn workers_data(state: &State) -> Result<Vec<Value>, ApiError> {
    let workers = state.bus.workers().await.map_err(ApiError::unavailable)?;
    Ok(workers
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "pending": w.pending,
                "idle_ms": u64::try_from(w.idle.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .collect())
}

pub(crate) async fn workers(AxState(state): AxState<State>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "workers": workers_data(&state).await? })))
}
