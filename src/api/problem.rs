//! Every error of the API as an RFC 9457 problem document (`application/problem+json`) with a
//! stable `type`, and the JSON body extractor that names the field a bad value came in.

use std::time::Duration;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::custody::TokenError;
use crate::store::StoreError;

/// The problem document. `type` is a relative URI, stable across versions: clients match on it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field a bad value came in, as a path (`tokens`, `positions[3].position`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Members of particular problem types (a broken connection's category and since when).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What went wrong, sorted by what the caller can do about it.
#[derive(Debug)]
pub enum ApiError {
    /// No key, or not one of ours.
    Unauthorized,
    NotFound(String),
    /// A value that cannot be used (422), and the field it came in.
    Invalid {
        field: String,
        detail: String,
    },
    /// Not JSON, or JSON of the wrong shape as a whole (400).
    Malformed(String),
    UnsupportedMediaType,
    MethodNotAllowed,
    TooLarge,
    Conflict {
        kind: &'static str,
        title: &'static str,
        detail: String,
        extra: serde_json::Map<String, serde_json::Value>,
    },
    /// Worth trying again after the wait.
    Unavailable {
        kind: &'static str,
        title: &'static str,
        detail: String,
        retry_after: Duration,
    },
    /// Something outside failed (a provider refusing a revocation): not the caller's doing.
    BadGateway(String),
    Timeout(Duration),
    /// Our fault; the details are in our log, not in the answer.
    Internal,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        ApiError::Invalid {
            field: field.into(),
            detail: detail.to_string(),
        }
    }

    fn parts(
        self,
    ) -> (
        StatusCode,
        &'static str,
        &'static str,
        Problem,
        Option<Duration>,
    ) {
        let mut extra = serde_json::Map::new();
        let mut field = None;
        let mut retry = None;
        let (status, kind, title, detail) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or unknown API key",
                "send `Authorization: Bearer <key>` with a key from the [api] section of the config"
                    .to_owned(),
            ),
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not-found", "Not found", what),
            ApiError::Invalid { field: f, detail } => {
                field = Some(f);
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-field",
                    "A field has a value that cannot be used",
                    detail,
                )
            }
            ApiError::Malformed(detail) => (
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "The body is not the JSON this call takes",
                detail,
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be JSON",
                "send `Content-Type: application/json`".to_owned(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "This route does not take that method",
                "see /v1/openapi.json for the calls and their methods".to_owned(),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "The body is larger than this API takes",
                "see [api] max_body_bytes in the config".to_owned(),
            ),
            ApiError::Conflict {
                kind,
                title,
                detail,
                extra: e,
            } => {
                extra = e;
                (StatusCode::CONFLICT, kind, title, detail)
            }
            ApiError::Unavailable {
                kind,
                title,
                detail,
                retry_after,
            } => {
                retry = Some(retry_after);
                (StatusCode::SERVICE_UNAVAILABLE, kind, title, detail)
            }
            ApiError::BadGateway(detail) => (
                StatusCode::BAD_GATEWAY,
                "provider-failed",
                "The provider did not do what was asked",
                detail,
            ),
            ApiError::Timeout(after) => {
                retry = Some(Duration::from_secs(1));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "The request took too long",
                    format!(
                        "no answer within {} ([api] request_timeout)",
                        humantime::format_duration(after)
                    ),
                )
            }
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "credwatch's log says what went wrong".to_owned(),
            ),
        };
        let problem = Problem {
            kind: format!("/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            field,
            extra,
        };
        (status, kind, title, problem, retry)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = matches!(self, ApiError::Unauthorized);
        let (status, _, _, problem, retry) = self.parts();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"credwatch\""),
            );
        }
        if let Some(wait) = retry {
            let secs = wait.as_secs().max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// How long a database that is down is likely to stay down, as a retry hint.
const DATABASE_RETRY: Duration = Duration::from_secs(5);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConnectionNotFound(_) | StoreError::PipelineNotFound(_) => {
                ApiError::NotFound(e.to_string())
            }
            StoreError::ConnectionInUse { pipelines, .. } => {
                let mut extra = serde_json::Map::new();
                let ids: Vec<&str> = pipelines.split(", ").collect();
                extra.insert("pipelines".into(), serde_json::json!(ids));
                ApiError::Conflict {
                    kind: "connection-in-use",
                    title: "Pipelines use this connection",
                    detail: format!(
                        "pipelines {pipelines} use this connection; remove or change them first"
                    ),
                    extra,
                }
            }
            StoreError::PausedForBrokenConnection { .. } => ApiError::Conflict {
                kind: "connection-broken",
                title: "A connection of this pipeline is broken",
                detail: e.to_string(),
                extra: serde_json::Map::new(),
            },
            // A row whose sealed tokens do not open (altered, or under a key not configured):
            // the sweep sets such a connection aside and alerts the operator.
            StoreError::Crypto(_) => {
                tracing::error!("API request failed: {e}");
                ApiError::Conflict {
                    kind: "credentials-unreadable",
                    title: "The stored credentials cannot be opened",
                    detail: "this connection's stored credentials cannot be opened with the configured keys; the operator is alerted when the sweep finds it, and reauthorizing replaces them".into(),
                    extra: serde_json::Map::new(),
                }
            }
            StoreError::ExternalIdTaken(_) => ApiError::Conflict {
                kind: "external-id-taken",
                title: "The external_id is already used",
                detail: e.to_string(),
                extra: serde_json::Map::new(),
            },
            e if e.is_outage() => {
                tracing::warn!("API request failed: {e}");
                ApiError::Unavailable {
                    kind: "database-unavailable",
                    title: "The database is not answering",
                    detail: "the database is failing; try again".into(),
                    retry_after: DATABASE_RETRY,
                }
            }
            e => {
                tracing::error!("API request failed: {e}");
                ApiError::Internal
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Broken {
                id,
                category,
                reason,
                since,
            } => {
                let mut extra = serde_json::Map::new();
                extra.insert("connection".into(), serde_json::json!(id));
                extra.insert("category".into(), serde_json::json!(category));
                extra.insert("reason".into(), serde_json::json!(reason));
                extra.insert("since".into(), serde_json::json!(since));
                ApiError::Conflict {
                    kind: "connection-broken",
                    title: "The connection is broken",
                    detail: format!(
                        "connection {id} is broken: {reason} Its owner has been asked to authorize it again."
                    ),
                    extra,
                }
            }
            TokenError::Unavailable { why, retry_after } => ApiError::Unavailable {
                kind: "token-unavailable",
                title: "No access token valid long enough right now",
                detail: why,
                retry_after,
            },
            TokenError::Store(e) => e.into(),
            TokenError::Check(crate::check::CheckError::Store(e)) => e.into(),
            TokenError::Check(e) => {
                tracing::error!("API request failed: {e}");
                ApiError::Internal
            }
        }
    }
}

/// A JSON body: the content type checked, the size capped (by the router's body limit), and a
/// bad value reported with the path of its field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether the request says its body is JSON (`application/json` or a `+json` type).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.ends_with("+json")
        })
}

/// A body that could not be read: too large for `[api] max_body_bytes`, or cut off.
pub fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge
    } else {
        ApiError::Malformed(format!("cannot read the body: {e}"))
    }
}

/// Deserializes, naming the field of the first bad value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
    if parsed.is_ok()
        && let Err(e) = de.end()
    {
        return Err(ApiError::Malformed(format!("not JSON: {e}")));
    }
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::Malformed(format!("not JSON: {inner}")));
            }
            let message = strip_position(&inner.to_string());
            // serde names a missing field in its message, at the path of the object holding it.
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.split('`').next())
            {
                let field = if path == "." {
                    missing.to_owned()
                } else {
                    format!("{path}.{missing}")
                };
                return Err(ApiError::invalid(field, "is required"));
            }
            if path == "." {
                // The whole body is of the wrong shape (an array where an object goes), or an
                // unknown field, which serde names in its message.
                if let Some(unknown) = message
                    .strip_prefix("unknown field `")
                    .and_then(|m| m.split('`').next())
                {
                    return Err(ApiError::invalid(
                        unknown.to_owned(),
                        "not a field of this call",
                    ));
                }
                return Err(ApiError::Malformed(message));
            }
            Err(ApiError::invalid(path, message))
        }
    }
}

/// serde_json's " at line 1 column 42": the field path says where, better.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
