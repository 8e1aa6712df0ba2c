//! Access tokens, failure reports and checks on demand.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::input::{self, OptionalJson, Params, Seconds};
use super::{ApiError, ApiJson, ApiState, Caller, Problem};
use crate::check::Report;
use crate::domain::{ConnectionId, ConnectionStatus};

/// How long a token must stay valid when the caller does not say.
const DEFAULT_MIN_VALID: std::time::Duration = std::time::Duration::from_secs(300);
const MAX_MIN_VALID: std::time::Duration = std::time::Duration::from_secs(86_400);
/// A failure report keeps this much of the provider's answer.
const MAX_REPORTED_BODY: usize = 4096;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenRequest {
    /// How long the token must stay valid: seconds, or text such as "10m". Default 5 minutes.
    #[serde(default)]
    min_valid: Option<Seconds>,
}

/// A working access token. The refresh token never leaves credwatch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AccessToken {
    access_token: String,
    /// Always "Bearer".
    token_type: &'static str,
    /// When the provider said it expires; null when it did not say.
    expires_at: Option<DateTime<Utc>>,
    scopes: Vec<String>,
}

/// A token valid for at least `min_valid`: the stored one when it is fresh enough, otherwise a
/// new one from a refresh run now through the scheduler's leased path (one refresh per
/// connection however many callers ask; the others wait for it).
#[utoipa::path(
    post,
    path = "/v1/connections/{id}/access-token",
    operation_id = "getAccessToken",
    tag = "tokens",
    params(
        ("id" = String, Path, description = "The connection"),
        ("min_valid" = Option<String>, Query, description = "Seconds, or text such as \"10m\" (also accepted in the body)"),
    ),
    request_body(content = Option<AccessTokenRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "A token valid for at least min_valid (or, when the provider issues shorter ones, a newly refreshed one)", body = AccessToken),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "connection-broken: the grant is gone; the owner was asked to reauthorize", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "token-unavailable: the refresh failed for a reason that may pass; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn access_token(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    params: Params,
    OptionalJson(body): OptionalJson<AccessTokenRequest>,
) -> Result<Json<AccessToken>, ApiError> {
    params.only(&["min_valid"])?;
    let id: ConnectionId = input::id("connection", &id)?;
    let body = body.unwrap_or_default();
    let min_valid = match (params.parsed::<Seconds>("min_valid")?, body.min_valid) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "min_valid",
                "given both in the query and in the body",
            ));
        }
        (Some(Seconds(d)), None) | (None, Some(Seconds(d))) => d,
        (None, None) => DEFAULT_MIN_VALID,
    };
    if min_valid > MAX_MIN_VALID {
        return Err(ApiError::invalid("min_valid", "at most 1 day"));
    }
    let current = state.current();
    let handed = state
        .custody
        .access_token(
            &current.checker,
            &id,
            min_valid,
            super::wait_deadline(&state),
            &state.shutdown,
        )
        .await?;
    state.metrics.access_token(&caller.0, handed.refreshed);
    Ok(Json(AccessToken {
        access_token: handed.access_token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_at: handed.expires_at,
        scopes: handed.scopes,
    }))
}

/// What the provider answered a pipeline that used this connection's token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureReport {
    /// The HTTP status the provider answered.
    status: u16,
    /// Its WWW-Authenticate header, if any.
    #[serde(default)]
    www_authenticate: Option<String>,
    /// The start of its body (the first 4 KiB are kept).
    #[serde(default)]
    body: Option<String>,
}

/// The verdict of the check a failure report caused (or shared).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailureVerdict {
    /// The connection's status after the check.
    status: ConnectionStatus,
    /// What the reported answer looks like on its own (it decides nothing by itself).
    reported: crate::domain::Category,
    /// When the check ended.
    checked_at: DateTime<Utc>,
    /// True when this report joined a check an earlier report started.
    shared: bool,
    check: Report,
}

/// A pipeline saw its provider refuse this connection's token. One report never breaks a
/// connection by itself: it makes credwatch check the connection now (refresh and probe), and
/// the answer is that check's verdict. Reports for the same connection within 10 seconds share
/// one check.
#[utoipa::path(
    post,
    path = "/v1/connections/{id}/failures",
    operation_id = "reportFailure",
    tag = "tokens",
    params(("id" = String, Path, description = "The connection")),
    request_body(content = FailureReport, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = FailureVerdict),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn failure(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<FailureReport>,
) -> Result<Json<FailureVerdict>, ApiError> {
    let id: ConnectionId = input::id("connection", &id)?;
    if !(100..=599).contains(&report.status) {
        return Err(ApiError::invalid(
            "status",
            "expected an HTTP status, 100 to 599",
        ));
    }
    let mut body = report.body.unwrap_or_default().into_bytes();
    body.truncate(MAX_REPORTED_BODY);
    let current = state.current();
    let connection = current.checker.store().connection(&id).await?;
    let rules = current
        .checker
        .provider(&connection.provider)
        .map(|p| p.config.rules.clone())
        .unwrap_or_else(|| Arc::from(Vec::new()));
    let outcome = crate::classify::Outcome::Response(crate::classify::Response {
        status: report.status,
        retry_after: None,
        www_authenticate: report.www_authenticate,
        location: None,
        body,
    });
    let reported =
        crate::classify::classify(crate::domain::Phase::Probe, &outcome, &rules, Utc::now());
    tracing::info!(connection = %id, key = %caller.0, status = report.status,
        category = reported.category.as_str(), "a pipeline reported a failure; checking the connection");
    let shared = state
        .custody
        .reported_failure(
            &current.checker,
            &id,
            super::wait_deadline(&state),
            &state.shutdown,
        )
        .await?;
    let after = current.checker.store().connection(&id).await?;
    Ok(Json(FailureVerdict {
        status: after.status,
        reported: reported.category,
        checked_at: shared.at,
        shared: shared.shared,
        check: shared.report,
    }))
}

/// Checks the connection now (refresh and probe) and answers what the check found: the "Test"
/// button of a platform's UI. While another check of it runs, waits for that one to end first.
#[utoipa::path(
    post,
    path = "/v1/connections/{id}/check",
    operation_id = "checkConnection",
    tag = "tokens",
    params(("id" = String, Path, description = "The connection")),
    responses(
        (status = 200, description = "OK", body = Report),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn check(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Report>, ApiError> {
    let id: ConnectionId = input::id("connection", &id)?;
    let current = state.current();
    let report = state
        .custody
        .check(
            &current.checker,
            &id,
            super::wait_deadline(&state),
            &state.shutdown,
        )
        .await?;
    Ok(Json(report))
}
