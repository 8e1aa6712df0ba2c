//! The public HTTP side: the reauthorize page and the OAuth callback for owners, and health for
//! operators (metrics only when asked: they answer on the API's private listener). It enters
//! through the store and the same actions as the checks.

mod connect;
mod form;
pub(crate) mod pages;
mod reauth;
mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::check::Checker;
use crate::config::{Config, Url};

pub use pages::Pages;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("page templates: {0}")]
    Pages(#[from] minijinja::Error),
}

pub struct AppState {
    /// Replaced when the config is reloaded.
    checker: std::sync::RwLock<Arc<Checker>>,
    /// The running config (for adding connections from connect links); replaced on reload.
    config: std::sync::RwLock<Arc<Config>>,
    pub pages: Pages,
    pub base_url: Url,
    pub link_lifetime: std::time::Duration,
}

impl AppState {
    pub fn checker(&self) -> Arc<Checker> {
        self.checker
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a reload: requests from now on use the new providers.
    pub fn set_checker(&self, checker: Arc<Checker>) {
        *self.checker.write().unwrap_or_else(|p| p.into_inner()) = checker;
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Where providers send owners back: `<public_base_url>/oauth/callback`.
    fn callback_url(&self) -> Url {
        self.base_url
            .join("oauth/callback")
            .unwrap_or_else(|_| self.base_url.clone())
    }
}

pub fn router(state: Arc<AppState>, with_metrics: bool) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    // On the API's listener always; here only if asked (this one faces the world).
    let router = if with_metrics {
        router.route("/metrics", get(metrics))
    } else {
        router
    };
    router
        .route(
            "/reauthorize/{token}",
            get(reauth::page).post(reauth::start),
        )
        .route("/connect/{token}", get(connect::page).post(connect::start))
        .route("/oauth/callback", get(reauth::callback))
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

/// Headers every answer carries. The owner pages hold links that act on a connection: they
/// must not be framed (clickjacking), cached or stored on the way (a shared proxy, the browser's
/// back button), or leak their address to the provider in a Referer; and no answer is ever
/// sniffed into another content type.
async fn protect(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Binds the listener now (so a taken port stops the start) and returns the server to run.
pub async fn bind(
    config: &Config,
    checker: Arc<Checker>,
) -> Result<(tokio::net::TcpListener, Router, Arc<AppState>), HttpError> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.http.listen,
            source,
        })?;
    let state = Arc::new(AppState {
        checker: std::sync::RwLock::new(checker),
        config: std::sync::RwLock::new(Arc::new(config.clone())),
        pages: Pages::new(
            config.http.brand_name.as_deref(),
            config.http.support_email.as_ref().map(|e| e.as_str()),
        )?,
        base_url: config.http.public_base_url.clone(),
        link_lifetime: config.notices.link_lifetime,
    });
    Ok((listener, router(state.clone(), config.http.metrics), state))
}

pub use serve::serve;

async fn healthz() -> &'static str {
    "ok\n"
}

/// How long readiness waits for the database: a probe wants an answer, and the pool would
/// otherwise wait its whole acquire timeout for a database that is down.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready while the database answers, its schema is current and writes go through: a daemon
/// that cannot write checks nothing.
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store = state.checker().store().clone();
    let unavailable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    };
    match tokio::time::timeout(READY_WITHIN, store.ready()).await {
        Err(_) => unavailable(format!(
            "the database did not answer within {}",
            humantime::format_duration(READY_WITHIN)
        )),
        Ok(Err(e)) => unavailable(e.to_string()),
        Ok(Ok(())) => match store.writes_failing() {
            Some(failing) => unavailable(failing.to_string()),
            None => (StatusCode::OK, "ready\n".to_owned()),
        },
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> axum::response::Response {
    render_metrics(&state.checker()).await
}

/// The Prometheus text of the counters and of the database's state (on either listener).
pub async fn render_metrics(checker: &Checker) -> axum::response::Response {
    let text = checker.metrics().render(checker.store().as_ref()).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
