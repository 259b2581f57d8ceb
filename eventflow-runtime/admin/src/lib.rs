//! The admin app of eventflow: an [axum](https://docs.rs/axum) router that shows a bus and
//! acts on it, for a bus on the memory backend or on Redis, built on the runtime's public
//! API alone.
//!
//! - a JSON API under `/api` (overview, handlers, dead letters with filters, search and
//!   paging, retry and delete one or all that match, schedules, pipelines);
//! - a web dashboard at `/` (server-rendered HTML, its small script embedded: nothing to
//!   build at install time), which refreshes itself while open;
//! - `/metrics`, Prometheus text exposition.
//!
//! Mount it in the axum app you already run, or serve it on its own:
//!
//! ```no_run
//! # async fn run(bus: eventflow_runtime::EventBus) -> std::io::Result<()> {
//! // In your app: axum::Router::new().nest("/eventflow", eventflow_admin::router(bus.clone()))
//! let admin = eventflow_admin::Admin::new(bus)
//!     .basic_auth_from_env("EVENTFLOW_ADMIN_CREDENTIALS") // "user:password"
//!     .read_only(false);
//! admin.serve(eventflow_admin::DEFAULT_ADDR.parse().expect("an address")).await
//! # }
//! ```
//!
//! ## Safety
//!
//! [`serve`] binds where it is told, and [`DEFAULT_ADDR`] is `127.0.0.1:8080`: reachable
//! from this machine only. Authentication is optional: a bearer token or basic credentials,
//! set in code or read from an environment variable (never shown in `Debug`, a page or a
//! log line). [`Admin::read_only`] refuses every request that would change something.
//! Only `POST` and `DELETE` change anything, and they are refused when they come from
//! another origin (their `Origin`, or `Referer`, must name this host): a page elsewhere
//! cannot make a logged-in browser retry or delete. Every name, payload and error is
//! escaped in the pages (a payload holding `<script>` shows as text), payloads are cut at
//! [`Admin::max_payload_chars`], and bad requests (an unknown id, a malformed cursor, a
//! limit out of range) get a 4xx answer with a JSON error.
//!
//! ## Prometheus
//!
//! `/metrics` renders what eventflow records through the `metrics` facade when it is given
//! the handle of a Prometheus recorder: [`Admin::install_prometheus`] installs one (it fails
//! when the process has a recorder already), [`Admin::prometheus_handle`] takes the handle
//! of one you installed yourself. Without one, `/metrics` renders the bus's own counters
//! under the same metric names, so it works with nothing installed.

mod api;
mod guard;
mod html;
mod pages;
mod prom;
mod queue;
mod state;

use std::net::SocketAddr;

use axum::Router;
use eventflow_runtime::EventBus;

/// The axum this router is built with, for serving it (`axum::serve`) or nesting it.
pub use axum;
pub use guard::Credentials;

/// Where [`Admin::serve`] listens unless told otherwise: this machine only.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// The longest payload (in characters) a page or an answer shows of a dead letter, by
/// default; past it the text is cut and says so.
pub const DEFAULT_MAX_PAYLOAD_CHARS: usize = 64 * 1024;

/// The admin app's settings; [`router`](Admin::router) builds it.
pub struct Admin {
    bus: EventBus,
    credentials: Option<Credentials>,
    read_only: bool,
    max_payload_chars: usize,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pipelines: Vec<state::PipelineInfo>,
}

impl Admin {
    /// The admin app of `bus`: no authentication, changes allowed.
    pub fn new(bus: EventBus) -> Self {
        Admin {
            bus,
            credentials: None,
            read_only: false,
            max_payload_chars: DEFAULT_MAX_PAYLOAD_CHARS,
            prometheus: None,
            pipelines: Vec::new(),
        }
    }

    /// Requires `Authorization: Bearer <token>` on every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::Bearer(token.into()));
        self
    }

    /// Requires HTTP basic credentials on every request (browsers ask for them).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// [`bearer_token`](Self::bearer_token) from the environment variable `var`, when it is
    /// set and not empty.
    pub fn bearer_token_from_env(self, var: &str) -> Self {
        match std::env::var(var) {
            Ok(t) if !t.is_empty() => self.bearer_token(t),
            _ => self,
        }
    }

    /// [`basic_auth`](Self::basic_auth) from the environment variable `var`, which holds
    /// `user:password`, when it is set.
    pub fn basic_auth_from_env(self, var: &str) -> Self {
        match std::env::var(var)
            .ok()
            .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        {
            Some((u, p)) => self.basic_auth(u, p),
            None => self,
        }
    }

    /// Refuses every request that would change something (retry, delete) with `403`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Cuts payloads shown in pages and answers at `n` characters.
    pub fn max_payload_chars(mut self, n: usize) -> Self {
        self.max_payload_chars = n.max(1);
        self
    }

    /// Installs a Prometheus recorder for the process, whose text `/metrics` renders. Fails
    /// when the process has a `metrics` recorder already: pass its handle with
    /// [`prometheus_handle`](Self::prometheus_handle) instead.
    pub fn install_prometheus(mut self) -> Result<Self, String> {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install a Prometheus recorder: {e}"))?;
        self.prometheus = Some(handle);
        Ok(self)
    }

    /// Renders `/metrics` from a Prometheus recorder installed elsewhere.
    pub fn prometheus_handle(
        mut self,
        handle: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// Shows a pipeline (its steps and DOT text) on `/api/pipelines`.
    pub fn pipeline(mut self, pipeline: &eventflow_runtime::pipeline::Pipeline) -> Self {
        self.pipelines.push(state::PipelineInfo {
            name: pipeline.name().to_owned(),
            dot: pipeline.to_dot(),
        });
        self
    }

    /// The router: the dashboard at `/`, the API under `/api`, `/metrics`. Nest it where
    /// you like (`Router::new().nest("/eventflow", admin.router())`); its links follow
    /// the prefix it is mounted under. Call it inside a Tokio runtime: the overview's chart
    /// is sampled by a task of the router's, every second, for as long as it lives.
    pub fn router(self) -> Router {
        let state = state::State::new(self);
        let guard = state.clone();
        Router::new()
            .merge(pages::routes())
            .merge(api::routes())
            .merge(prom::routes())
            .layer(axum::middleware::from_fn_with_state(guard, guard::check))
            .with_state(state)
    }

    /// Serves the router at `addr` until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "eventflow: admin app listening");
        axum::serve(listener, self.router()).await
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("credentials", &self.credentials)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// The admin router of `bus` with default settings (see [`Admin`]).
pub fn router(bus: EventBus) -> Router {
    Admin::new(bus).router()
}

/// Serves the admin app of `bus` at `addr` (see [`DEFAULT_ADDR`]).
pub async fn serve(bus: EventBus, addr: SocketAddr) -> std::io::Result<()> {
    Admin::new(bus).serve(addr).await
}
