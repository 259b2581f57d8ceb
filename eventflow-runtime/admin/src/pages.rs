//! The dashboard's pages, rendered on the server from the same queries as the API.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{OriginalUri, Path, Query, State as AxState};
use axum::http::Uri;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::api::{self, Filter};
use crate::html::{Nav, chart, esc, page, time, url_value};
use crate::state::State;

pub(crate) fn routes() -> Router<State> {
    Router::new()
        .route("/", get(overview))
        .route("/handlers", get(handlers))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{id}", get(dead_letter))
        .route("/schedules", get(schedules))
        .route("/delayed", get(delayed))
        .route("/workers", get(workers))
}

/// Where the router is mounted: the part of the request's path before the router's own.
fn prefix(original: &Uri, inner: &Uri) -> String {
    let full = original.path();
    let own = inner.path();
    let p = full.strip_suffix(own).unwrap_or(full);
    p.trim_end_matches('/').to_owned()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Some(f) => format!("{f:.2}"),
        None => "—".to_owned(),
    }
}

async fn overview(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
) -> Html<String> {
    let p = prefix(&original, &inner);
    let o = api::overview_data(&state).await;
    let status = text(&o["health"]["status"]);
    let cls = match status.as_str() {
        "Healthy" => "ok",
        "Degraded" => "warn",
        _ => "bad",
    };
    let mut body = String::from("<h1>Overview</h1><div class=\"cards\">");
    let mut card = |k: &str, v: String, cls: &str| {
        let _ = write!(
            body,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v {cls}\">{}</div></div>",
            esc(k),
            esc(&v)
        );
    };
    card("backend", text(&o["backend"]), "");
    card(
        "reachable",
        if o["reachable"] == true { "yes" } else { "no" }.into(),
        if o["reachable"] == true { "ok" } else { "bad" },
    );
    card("health", status, cls);
    card("published", num(&o["published"]), "");
    card("in flight", num(&o["in_flight"]), "");
    card("pending", num(&o["pending"]), "");
    card("lag", num(&o["lag"]), "");
    card("dead letters", num(&o["dead_letters"]), "bad");
    body.push_str("</div>");
    if let Some(reasons) = o["health"]["reasons"].as_array().filter(|r| !r.is_empty()) {
        body.push_str("<h2>Why</h2><ul>");
        for r in reasons {
            let _ = write!(body, "<li>{}</li>", esc(&text(r)));
        }
        body.push_str("</ul>");
    }
    let points: Vec<(u64, u64, u64)> = state
        .samples()
        .iter()
        .map(|s| (s.published, s.succeeded, s.failed))
        .collect();
    body.push_str("<h2>Events per second</h2>");
    body.push_str(&chart(&points));
    let _ = write!(
        body,
        "<p class=\"muted\">JSON: <a href=\"{p}/api/overview\">/api/overview</a> · Prometheus: <a href=\"{p}/metrics\">/metrics</a></p>"
    );
    Html(page("Overview", Nav::Overview, state.read_only, &p, &body))
}

async fn handlers(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
) -> Html<String> {
    let p = prefix(&original, &inner);
    let mut body = String::from(
        "<h1>Handlers</h1><table><thead><tr><th>name</th><th>pattern</th><th>executor</th>\
         <th>retry</th><th>concurrency</th><th>delivered</th><th>succeeded</th><th>failed attempts</th>\
         <th>retried</th><th>dead-lettered</th><th>filtered</th><th>success</th><th>p50 / p99</th></tr></thead><tbody>",
    );
    for h in api::handlers_data(&state) {
        let name = text(&h["name"]);
        let rate = h["success_rate"].as_f64().unwrap_or(1.0);
        let _ = write!(
            body,
            "<tr data-handler=\"{n}\"><td><a href=\"{p}/dead-letters?handler={u}\">{n}</a></td><td><code>{}</code></td><td>{}</td>\
             <td>{} attempts</td><td class=\"num\">{}</td><td class=\"num delivered\">{}</td><td class=\"num succeeded\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num dead\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num {}\">{:.1}%</td><td class=\"num\">{} / {} ms</td></tr>",
            esc(&text(&h["pattern"])),
            esc(&text(&h["executor"])),
            num(&h["retry"]["max_attempts"]),
            esc(&text(&h["concurrency"])),
            num(&h["delivered"]),
            num(&h["succeeded"]),
            num(&h["failed_attempts"]),
            num(&h["retried"]),
            num(&h["dead_lettered"]),
            num(&h["filtered"]),
            if rate >= 0.99 {
                "ok"
            } else if rate >= 0.9 {
                "warn"
            } else {
                "bad"
            },
            rate * 100.0,
            num(&h["p50_ms"]),
            num(&h["p99_ms"]),
            n = esc(&name),
            u = url_value(&name),
        );
    }
    body.push_str("</tbody></table>");
    Html(page("Handlers", Nav::Handlers, state.read_only, &p, &body))
}

/// The query string of a filter (without cursor), for links and bulk actions.
fn filter_query(f: &Filter) -> String {
    let mut parts = Vec::new();
    for (k, v) in [("handler", &f.handler), ("event", &f.event), ("q", &f.q)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", url_value(v)));
        }
    }
    parts.join("&")
}

async fn dead_letters(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
    Query(filter): Query<Filter>,
) -> Response {
    let p = prefix(&original, &inner);
    let page_data = match api::letters_page(&state, &filter).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let field = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let handlers = state.bus.handler_names();
    let mut options = String::from("<option value=\"\">every handler</option>");
    for h in &handlers {
        let sel = if filter.handler.as_deref() == Some(h) {
            " selected"
        } else {
            ""
        };
        let _ = write!(options, "<option value=\"{0}\"{sel}>{0}</option>", esc(h));
    }
    let fq = filter_query(&filter);
    let mut body = format!(
        "<h1>Dead letters</h1><form class=\"filter\" method=\"get\" action=\"{p}/dead-letters\">\
         <select name=\"handler\" id=\"filter-handler\">{options}</select>\
         <input name=\"event\" placeholder=\"event name\" value=\"{}\">\
         <input name=\"q\" placeholder=\"search the errors\" value=\"{}\">\
         <button class=\"primary\" type=\"submit\" id=\"filter-apply\">Filter</button>\
         <a class=\"button\" href=\"{p}/dead-letters\">Clear</a></form><div id=\"flash\"></div>",
        field(&filter.event),
        field(&filter.q),
    );
    if !state.read_only && !page_data.letters.is_empty() {
        let _ = write!(
            body,
            "<div class=\"bar\"><button class=\"primary\" id=\"retry-all\" data-method=\"POST\" data-url=\"{p}/api/dead-letters/retry?{fq}\" \
             data-confirm=\"Retry every dead letter that matches this filter?\" data-done=\"Retried\">Retry all that match</button>\
             <button class=\"danger\" id=\"delete-all\" data-method=\"DELETE\" data-url=\"{p}/api/dead-letters?{fq}\" \
             data-confirm=\"Delete every dead letter that matches this filter? This cannot be undone.\" data-done=\"Deleted\">Delete all that match</button></div>"
        );
    }
    body.push_str(
        "<table id=\"letters\"><thead><tr><th>failed at</th><th>handler</th><th>event</th><th>error</th>\
         <th>attempts</th><th></th></tr></thead><tbody>",
    );
    if page_data.letters.is_empty() {
        body.push_str("<tr><td colspan=\"6\" class=\"muted\">No dead letters.</td></tr>");
    }
    for l in &page_data.letters {
        let s = api::summary(l);
        let id = l.id.to_string();
        let actions = if state.read_only {
            String::new()
        } else {
            format!(
                "<button class=\"retry\" data-method=\"POST\" data-url=\"{p}/api/dead-letters/{id}/retry\" data-done=\"Retried\">Retry</button> \
                 <button class=\"danger delete\" data-method=\"DELETE\" data-url=\"{p}/api/dead-letters/{id}\" data-confirm=\"Delete this dead letter?\" data-done=\"Deleted\">Delete</button>"
            )
        };
        let _ = write!(
            body,
            "<tr class=\"letter\" data-id=\"{id}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"err\">{}</td>\
             <td class=\"num\">{}</td><td><a href=\"{p}/dead-letters/{id}\">view</a> {actions}</td></tr>",
            esc(&time(s["failed_at_ms"].as_u64().unwrap_or(0))),
            esc(&l.handler),
            esc(l.envelope.name.as_str()),
            esc(&text(&s["error"])),
            l.attempts,
        );
    }
    body.push_str("</tbody></table>");
    if let Some(next) = &page_data.next {
        let sep = if fq.is_empty() { "" } else { "&" };
        let _ = write!(
            body,
            "<div class=\"bar\"><a class=\"button\" id=\"next-page\" href=\"{p}/dead-letters?{fq}{sep}cursor={}\">Next page →</a></div>",
            url_value(next)
        );
    }
    Html(page(
        "Dead letters",
        Nav::DeadLetters,
        state.read_only,
        &p,
        &body,
    ))
    .into_response()
}

async fn dead_letter(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
    Path(id): Path<String>,
) -> Response {
    let p = prefix(&original, &inner);
    let id = match api::parse_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let letter = match state.bus.dead_letter(id).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            let body = format!(
                "<h1>Dead letter</h1><p class=\"muted\">No dead letter {id}: it was retried or deleted.</p>\
                 <p><a href=\"{p}/dead-letters\">All dead letters</a></p>"
            );
            let mut r = Html(page(
                "Dead letter",
                Nav::DeadLetters,
                state.read_only,
                &p,
                &body,
            ))
            .into_response();
            *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
            return r;
        }
        Err(e) => return crate::guard::ApiError::unavailable(e).into_response(),
    };
    let d = api::detail(&letter, state.max_payload_chars);
    let e = &d["envelope"];
    let mut body = format!("<h1>Dead letter <code>{id}</code></h1><div id=\"flash\"></div>");
    if !state.read_only {
        let _ = write!(
            body,
            "<div class=\"bar\"><button class=\"primary\" id=\"retry-one\" data-method=\"POST\" data-url=\"{p}/api/dead-letters/{id}/retry\" data-then=\"{p}/dead-letters\">Retry</button>\
             <button class=\"danger\" id=\"delete-one\" data-method=\"DELETE\" data-url=\"{p}/api/dead-letters/{id}\" data-confirm=\"Delete this dead letter?\" data-then=\"{p}/dead-letters\">Delete</button></div>"
        );
    }
    body.push_str("<dl>");
    let mut row = |k: &str, v: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    };
    row("handler", text(&d["handler"]));
    row("event", text(&e["name"]));
    row("event id", text(&e["id"]));
    row("error", text(&d["error"]));
    row("error kind", text(&d["error_kind"]));
    row("attempts", num(&d["attempts"]));
    row(
        "first failed at",
        time(d["first_failed_at_ms"].as_u64().unwrap_or(0)),
    );
    row("failed at", time(d["failed_at_ms"].as_u64().unwrap_or(0)));
    row(
        "published at",
        time(e["timestamp_ms"].as_u64().unwrap_or(0)),
    );
    row("priority", num(&e["priority"]));
    row("correlation id", text(&e["correlation_id"]));
    row("causation id", text(&e["causation_id"]));
    row("trace", text(&e["trace"]));
    body.push_str("</dl><h2>Headers</h2>");
    match e["headers"].as_object().filter(|h| !h.is_empty()) {
        Some(h) => {
            body.push_str("<table><tbody>");
            for (k, v) in h {
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    esc(k),
                    esc(&text(v))
                );
            }
            body.push_str("</tbody></table>");
        }
        None => body.push_str("<p class=\"muted\">None.</p>"),
    }
    let _ = write!(
        body,
        "<h2>Payload</h2><pre id=\"payload\">{}</pre>",
        esc(&text(&e["payload"]))
    );
    Html(page(
        "Dead letter",
        Nav::DeadLetters,
        state.read_only,
        &p,
        &body,
    ))
    .into_response()
}

async fn schedules(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
) -> Html<String> {
    let p = prefix(&original, &inner);
    let mut body = String::from(
        "<h1>Schedules</h1><table><thead><tr><th>name</th><th>schedule</th><th>last tick</th><th>last outcome</th>\
         <th>next tick</th><th>succeeded</th><th>failed</th><th>run elsewhere</th><th>not claimed</th></tr></thead><tbody>",
    );
    let rows = api::schedules_data(&state);
    if rows.is_empty() {
        body.push_str(
            "<tr><td colspan=\"6\" class=\"muted\">No scheduled functions on this bus.</td></tr>",
        );
    }
    for s in rows {
        let last = s["last_tick_ms"].as_u64().map_or("—".to_owned(), time);
        let next = s["next_tick_ms"].as_u64().map_or("—".to_owned(), time);
        let outcome = text(&s["last_outcome"]);
        let cls = match outcome.as_str() {
            "failed" => "bad",
            "succeeded" => "ok",
            _ => "muted",
        };
        let error = s["last_error"]
            .as_str()
            .map(|e| format!("<div class=\"err\">{}</div>", esc(e)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"{cls}\">{}{error}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&text(&s["name"])),
            esc(&text(&s["schedule"])),
            esc(&last),
            esc(&outcome),
            esc(&next),
            num(&s["succeeded"]),
            num(&s["failed"]),
            num(&s["claimed_elsewhere"]),
            num(&s["unclaimed"]),
        );
    }
    body.push_str("</tbody></table>");
    Html(page(
        "Schedules",
        Nav::Schedules,
        state.read_only,
        &p,
        &body,
    ))
}

async fn delayed(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
    Query(paging): Query<crate::queue::Paging>,
) -> Response {
    let p = prefix(&original, &inner);
    let data = match crate::queue::delayed_page(&state, &paging).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let mut body = String::from(
        "<h1>Delayed events</h1><div id=\"flash\"></div><table id=\"delayed\"><thead><tr><th>due</th><th>event</th>\
         <th>event id</th><th>for</th><th>priority</th><th></th></tr></thead><tbody>",
    );
    let events = data["delayed"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        body.push_str(
            "<tr><td colspan=\"6\" class=\"muted\">No events are waiting for their time.</td></tr>",
        );
    }
    for e in &events {
        let id = text(&e["id"]);
        let cancel = if state.read_only {
            String::new()
        } else {
            format!(
                "<button class=\"danger\" data-method=\"DELETE\" data-url=\"{p}/api/delayed/{}\" data-confirm=\"Cancel this event? It will not be delivered.\" data-done=\"Cancelled\">Cancel</button>",
                esc(&id)
            )
        };
        let _ = write!(
            body,
            "<tr class=\"delayed\"><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td>{cancel}</td></tr>",
            esc(&time(e["due_ms"].as_u64().unwrap_or(0))),
            esc(&text(&e["event"])),
            esc(&id),
            esc(&e["handler"]
                .as_str()
                .map_or("every handler".to_owned(), str::to_owned)),
            num(&e["priority"]),
        );
    }
    body.push_str("</tbody></table>");
    if let Some(next) = data["next"].as_str() {
        let _ = write!(
            body,
            "<div class=\"bar\"><a class=\"button\" href=\"{p}/delayed?cursor={}\">Next page →</a></div>",
            url_value(next)
        );
    }
    Html(page("Delayed", Nav::Delayed, state.read_only, &p, &body)).into_response()
}

async fn workers(
    AxState(state): AxState<State>,
    OriginalUri(original): OriginalUri,
    inner: Uri,
) -> Response {
    let p = prefix(&original, &inner);
    let rows = match crate::queue::workers_data(&state).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut body = String::from(
        "<h1>Workers</h1><table id=\"workers\"><thead><tr><th>consumer</th><th>pending</th><th>idle</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        let _ = write!(
            body,
            "<tr><td colspan=\"3\" class=\"muted\">No workers: the {} backend has no consumers to show.</td></tr>",
            esc(state.bus.backend_name())
        );
    }
    for w in rows {
        let idle = w["idle_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{idle:.1} s</td></tr>",
            esc(&text(&w["name"])),
            num(&w["pending"]),
        );
    }
    body.push_str("</tbody></table>");
    Html(page("Workers", Nav::Workers, state.read_only, &p, &body)).into_response()
}
