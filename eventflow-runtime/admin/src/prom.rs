//! `/metrics`: Prometheus text exposition.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::State;

pub(crate) fn routes() -> Router<State> {
    Router::new().route("/metrics", get(metrics))
}

/// A label value with `\`, `"` and new lines escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One counter of a handler's metrics.
type Count = fn(&eventflow_runtime::HandlerMetrics) -> u64;

/// The bus's own counters, under the names eventflow records through `metrics`.
fn own_counters(state: &State) -> String {
    let m = state.bus.metrics();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# TYPE eventflow_events_published_total counter\neventflow_events_published_total {}",
        m.published
    );
    let _ = writeln!(
        out,
        "# TYPE eventflow_events_in_flight gauge\neventflow_events_in_flight {}",
        m.in_flight
    );
    let families: [(&str, Count); 6] = [
        ("eventflow_events_delivered_total", |h| h.delivered),
        ("eventflow_events_succeeded_total", |h| h.succeeded),
        ("eventflow_attempts_failed_total", |h| h.failed_attempts),
        ("eventflow_retries_total", |h| h.retried),
        ("eventflow_events_dead_lettered_total", |h| h.dead_lettered),
        ("eventflow_events_filtered_total", |h| h.filtered),
    ];
    for (name, value) in families {
        let _ = writeln!(out, "# TYPE {name} counter");
        for h in &m.handlers {
            let _ = writeln!(
                out,
                "{name}{{handler=\"{}\"}} {}",
                label(&h.handler),
                value(h)
            );
        }
    }
    out
}

async fn metrics(AxState(state): AxState<State>) -> impl IntoResponse {
    let body = match &state.prometheus {
        Some(handle) => handle.render(),
        None => own_counters(&state),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
