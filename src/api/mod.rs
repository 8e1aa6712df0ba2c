//! The platform's API, on a listener of its own (`[api] listen`): access tokens handed out
//! through the checks' leased path, connections, pipelines and their positions. Every handler is
//! a thin caller of the same functions the command line uses (`connections`, `pipelines`,
//! `custody`, `links`); the OpenAPI document is generated from the handlers and their types.

mod auth;
mod connections;
mod events;
mod input;
mod pipelines;
mod problem;
mod tokens;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::check::Checker;
use crate::config::Config;
use crate::custody::Custody;
use crate::metrics::Metrics;

pub use auth::{Caller, generate_key};
pub use problem::{ApiError, ApiJson, Problem};

/// What one config generation gives the API; replaced whole on reload.
pub struct Generation {
    pub config: Arc<Config>,
    pub checker: Arc<Checker>,
    keys: auth::Keys,
}

pub struct ApiState {
    current: RwLock<Arc<Generation>>,
    pub custody: Custody,
    pub metrics: Arc<Metrics>,
    /// Cancelled at shutdown: checks started for a request give their claims back.
    pub shutdown: CancellationToken,
}

impl ApiState {
    pub fn new(
        config: Arc<Config>,
        checker: Arc<Checker>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let metrics = checker.metrics().clone();
        let state = Arc::new(Self {
            current: RwLock::new(Arc::new(Generation {
                keys: auth::Keys::new(&config.api.keys),
                config,
                checker,
            })),
            custody: Custody::new(),
            metrics,
            shutdown,
        });
        state.log_keys();
        state
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a reload: new keys, providers and limits for every request from now on.
    pub fn set(&self, config: Arc<Config>, checker: Arc<Checker>) {
        let generation = Arc::new(Generation {
            keys: auth::Keys::new(&config.api.keys),
            config,
            checker,
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = generation;
        self.log_keys();
    }

    fn log_keys(&self) {
        let current = self.current();
        let names: Vec<&str> = current
            .config
            .api
            .keys
            .iter()
            .map(|k| k.name.as_str())
            .collect();
        if names.is_empty() {
            tracing::warn!(
                "no [[api.keys]] configured: the platform's API refuses every request (see `credwatch api-key generate`)"
            );
        } else {
            tracing::info!(keys = %names.join(","), "API keys loaded");
        }
    }
}

impl Generation {
    /// The name of the presented key, if it is one of this generation's.
    fn caller(&self, presented: &str) -> Option<Arc<str>> {
        self.keys.find(presented)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "credwatch platform API",
        description = "Fresh access tokens, connections, pipelines and positions. Every call but \
            this document takes `Authorization: Bearer <key>`; every error is an RFC 9457 problem \
            document."
    ),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "tokens", description = "Access tokens and failure reports"),
        (name = "connections", description = "Stored grants"),
        (name = "pipelines", description = "What reads through connections, and how far it got"),
        (name = "events", description = "What happened, in order: the feed webhooks deliver too"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A key from `credwatch api-key generate`"))
                    .build(),
            ),
        );
    }
}

/// The API's routes and its OpenAPI document, generated from the handlers.
fn v1() -> (Router<Arc<ApiState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tokens::access_token))
        .routes(routes!(tokens::failure))
        .routes(routes!(tokens::check))
        .routes(routes!(connections::create, connections::list))
        .routes(routes!(
            connections::show,
            connections::update,
            connections::remove
        ))
        .routes(routes!(connections::reauthorize_link))
        .routes(routes!(connections::connect_link))
        .routes(routes!(pipelines::create, pipelines::list))
        .routes(routes!(pipelines::show, pipelines::remove))
        .routes(routes!(pipelines::position))
        .routes(routes!(pipelines::positions))
        .routes(routes!(pipelines::pause))
        .routes(routes!(pipelines::resume))
        .routes(routes!(pipelines::status))
        .routes(routes!(events::list))
        .split_for_parts()
}

/// The OpenAPI document, as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    v1().1.to_pretty_json().unwrap_or_default()
}

pub fn router(state: Arc<ApiState>) -> Router {
    let (v1, _) = v1();
    let document: Arc<str> = Arc::from(openapi_json());
    let config = state.current().config.clone();
    let v1 = v1
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(config.api.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ));
    Router::new()
        .merge(v1)
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        document.to_string(),
                    )
                }
            }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    crate::http::render_metrics(&state.current().checker).await
}

/// Token answers must not be kept by anything on the way.
async fn no_store(mut response: Response) -> Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Every request ends within `[api] request_timeout`, with a problem document if it has to.
async fn deadline(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let limit = state.current().config.api.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}

/// When a request that may wait for a refresh must give up: a little before the request's own
/// timeout, so it answers with the reason rather than with the timeout.
fn wait_deadline(state: &ApiState) -> tokio::time::Instant {
    let limit = state.current().config.api.request_timeout;
    tokio::time::Instant::now() + limit.saturating_sub(Duration::from_secs(1))
}

/// Binds the API's listener now, so a taken port stops the start.
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, crate::http::HttpError> {
    tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| crate::http::HttpError::Bind {
            addr: config.api.listen,
            source,
        })
}
