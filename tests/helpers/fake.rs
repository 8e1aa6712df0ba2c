//! A fault-injecting OAuth provider (axum), for what a real server will not do on demand: 5xx
//! bursts, HTML error pages, truncated JSON, 429 with Retry-After, huge bodies, hangs. It is
//! used in addition to oidc-provider, never instead of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// How the token endpoint answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A good refresh: new access and refresh tokens, numbered.
    Tokens,
    /// A good refresh whose access token lives this many seconds.
    TokensFor(u64),
    /// This status with a JSON body.
    Json(u16, &'static str),
    /// A proxy's or a maintenance page: HTML, with this status.
    Html(u16),
    /// A token response cut off in the middle.
    Truncated,
    /// 429 with `Retry-After: SECS`.
    TooMany(u64),
    /// 429 with this exact `Retry-After` value.
    RetryAfter(&'static str),
    /// A 10 MB body.
    Huge,
    /// A good answer, after this long.
    Slow(Duration),
    /// An error whose description repeats the refresh token it was sent.
    EchoToken,
    /// 401 `invalid_client`, quoting the Authorization header it got and the secret in it.
    EchoClient,
}

struct Fake {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    token_calls: AtomicUsize,
}

pub struct FakeProvider {
    pub port: u16,
    fake: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl FakeProvider {
    pub async fn spawn() -> Self {
        Self::spawn_on(0).await
    }

    /// On a given port, to come back where a stopped one was.
    pub async fn spawn_on(port: u16) -> Self {
        let fake = Arc::new(Fake {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::Tokens),
            token_calls: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind fake provider");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route("/probe", axum::routing::get(probe))
            .with_state(fake.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            port,
            fake,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// A resource that refuses every access token, quoting it back (raw and in Base64).
    pub fn probe_url(&self) -> String {
        format!("http://127.0.0.1:{}/probe", self.port)
    }

    /// The next answers, in order; then the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.fake.script.lock().unwrap().extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.fake.default.lock().unwrap() = reply;
    }

    pub fn token_calls(&self) -> usize {
        self.fake.token_calls.load(Ordering::SeqCst)
    }

    /// Stops listening (the provider is down); returns the port it had.
    pub async fn stop(mut self) -> u16 {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        self.port
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

async fn probe(headers: axum::http::HeaderMap) -> Response {
    use base64::Engine;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\"".to_owned(),
            ),
        ],
        format!(
            r#"{{"error":"invalid_token","error_description":"token {token} (also {b64}) is not valid here"}}"#
        ),
    )
        .into_response()
}

async fn token(
    State(fake): State<Arc<Fake>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let n = fake.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let reply = {
        let next = fake.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| fake.default.lock().unwrap().clone())
    };
    let tokens_for = |secs: u64| {
        (
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"access_token":"fake-at-{n}-0123456789","refresh_token":"fake-rt-{n}-0123456789","expires_in":{secs},"token_type":"Bearer"}}"#
            ),
        )
            .into_response()
    };
    let tokens = || tokens_for(3600);
    let status = |s: u16| StatusCode::from_u16(s).unwrap();
    match reply {
        Reply::Tokens => tokens(),
        Reply::TokensFor(secs) => tokens_for(secs),
        Reply::Json(s, body) => (
            status(s),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Reply::Html(s) => (
            status(s),
            [(header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><body><h1>Service unavailable</h1><p>invalid_grant</p></body></html>",
        )
            .into_response(),
        Reply::Truncated => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"access_token":"fake-at-trunc","refresh_tok"#,
        )
            .into_response(),
        Reply::TooMany(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            r#"{"error":"rate_limited"}"#,
        )
            .into_response(),
        Reply::RetryAfter(value) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, value)],
            r#"{"error":"rate_limited"}"#,
        )
            .into_response(),
        Reply::Huge => (
            [(header::CONTENT_TYPE, "application/json")],
            vec![b' '; 10 * 1024 * 1024],
        )
            .into_response(),
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            tokens()
        }
        Reply::EchoClient => {
            use base64::Engine;
            let basic = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let decoded = basic
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                format!(
                    r#"{{"error":"invalid_client","error_description":"bad client: {basic} ({decoded})"}}"#
                ),
            )
                .into_response()
        }
        Reply::EchoToken => {
            let sent = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh_token="))
                .unwrap_or("")
                .to_owned();
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                format!(
                    r#"{{"error":"weird_state","error_description":"cannot use refresh token {sent} right now"}}"#
                ),
            )
                .into_response()
        }
    }
}
