//! Connections: created from a grant the platform obtained, listed, shown, changed, removed.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::input::{self, Params};
use super::{ApiError, ApiJson, ApiState, Problem};
use crate::connections::{AddConnection, AddError, Added, Credential, Invited, RemoveError};
use crate::domain::{ConnectionId, ConnectionStatus, EmailAddress, Name, PipelineId, ProviderId};
use crate::store::{CheckRecord, Connection, ConnectionFilter, ConnectionUpdate};
use crate::tokens::TokenSet;

/// The platform's metadata is kept as given, up to this size.
const MAX_METADATA: usize = 16 * 1024;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// A provider of the config.
    provider: ProviderId,
    name: Name,
    /// Who authorized it; gets the e-mails.
    owner: EmailAddress,
    /// The account it belongs to; by default learned from the grant, as the provider's
    /// `account_from` says.
    #[serde(default)]
    account: Option<String>,
    /// Store it even though its account cannot be known (it then cannot be reauthorized).
    #[serde(default)]
    allow_unknown_account: bool,
    /// For an OAuth provider: its token response, as it came (RFC 6749 §5.1).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    tokens: Option<serde_json::Value>,
    /// For a provider with `auth = "api_key"`: `{"api_key": "…"}`; with `auth = "basic"`:
    /// `{"username": "…", "password": "…"}`. Never shown again.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    credentials: Option<serde_json::Value>,
    /// The platform's own id: creating again with the same one answers the first connection.
    #[serde(default)]
    external_id: Option<String>,
    /// Anything the platform wants kept with it (a JSON object, up to 16 KiB).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A connection: everything but its tokens.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    id: ConnectionId,
    provider: ProviderId,
    name: String,
    owner: EmailAddress,
    account: Option<String>,
    scopes: Vec<String>,
    status: ConnectionStatus,
    /// The category of the last failure, while degraded or broken.
    reason: Option<String>,
    /// Since when it has had its status.
    since: DateTime<Utc>,
    has_refresh_token: bool,
    access_expires_at: Option<DateTime<Utc>>,
    refresh_expires_at: Option<DateTime<Utc>>,
    last_check_at: Option<DateTime<Utc>>,
    next_check_at: DateTime<Utc>,
    /// Why checks skip it (its stored tokens cannot be opened); null normally.
    set_aside: Option<String>,
    created_at: DateTime<Utc>,
    external_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
    /// Only when one connection is asked for: the pipelines using it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pipelines: Option<Vec<PipelineId>>,
    /// Only when one connection is asked for: its latest checks, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    recent_checks: Option<Vec<CheckRecord>>,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        Self {
            metadata: c
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            id: c.id,
            provider: c.provider,
            name: c.name,
            owner: c.owner,
            account: c.account,
            scopes: c.scopes,
            status: c.status,
            reason: c.reason,
            since: c.since,
            has_refresh_token: c.has_refresh_token,
            access_expires_at: c.access_expires_at,
            refresh_expires_at: c.refresh_expires_at,
            last_check_at: c.last_check_at,
            next_check_at: c.next_check_at,
            set_aside: c.set_aside,
            created_at: c.created_at,
            external_id: c.external_id,
            pipelines: None,
            recent_checks: None,
        }
    }
}

/// One page of a list, and where the next one starts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` items read: the extra one only says that more follow, and the
    /// cursor is the last shown item's id.
    pub fn of<R>(
        mut read: Vec<R>,
        limit: u32,
        id: impl Fn(&R) -> String,
        view: impl Fn(R) -> T,
    ) -> Self {
        let more = read.len() > limit as usize;
        read.truncate(limit as usize);
        let next_cursor = more.then(|| read.last().map(&id)).flatten();
        Self {
            items: read.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// 201 with the new resource, or 200 with the one its external_id already named.
pub fn added<Id: std::fmt::Display>(
    added: &Added<Id>,
    collection: &str,
    view: impl Serialize,
) -> Response {
    let status = match added {
        Added::Created(_) => StatusCode::CREATED,
        Added::Existing(_) => StatusCode::OK,
    };
    let location = format!("/v1/{collection}/{}", added.id());
    (status, [(header::LOCATION, location)], Json(view)).into_response()
}

fn metadata_text(
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<String>, ApiError> {
    let Some(m) = metadata else { return Ok(None) };
    let text = serde_json::Value::Object(m).to_string();
    if text.len() > MAX_METADATA {
        return Err(ApiError::invalid("metadata", "at most 16 KiB of JSON"));
    }
    Ok(Some(text))
}

fn add_refused(e: AddError) -> ApiError {
    match e {
        AddError::UnknownProvider { .. } => ApiError::invalid("provider", e),
        AddError::WrongCredential { .. } => ApiError::invalid("credentials", e),
        AddError::AccountMismatch { .. } => ApiError::invalid("account", e),
        AddError::AccountUnknown { .. } => ApiError::invalid(
            "account",
            format!(
                "{e}: give account, or allow_unknown_account (its owner then cannot reauthorize it)"
            ),
        ),
        AddError::Http(e) => {
            tracing::error!("cannot build the HTTP client: {e}");
            ApiError::Internal
        }
        AddError::Store(e) => e.into(),
    }
}

/// Stores a grant the platform obtained. With an `external_id` already used, answers the
/// connection that has it (200) and writes nothing.
#[utoipa::path(
    post,
    path = "/v1/connections",
    operation_id = "createConnection",
    tag = "connections",
    request_body(content = NewConnection, content_type = "application/json"),
    responses(
        (status = 201, body = ConnectionView, description = "Created"),
        (status = 200, body = ConnectionView, description = "A connection with this external_id already existed"),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    ApiJson(new): ApiJson<NewConnection>,
) -> Result<Response, ApiError> {
    let current = state.current();
    let config = &current.config;
    let provider = crate::connections::configured(config, &new.provider).map_err(add_refused)?;
    let account =
        crate::connections::account(new.account).map_err(|e| ApiError::invalid("account", e))?;
    let external_id = input::external_id("external_id", new.external_id)?;
    let metadata = metadata_text(new.metadata)?;
    let now = Utc::now();
    let credential = match (new.tokens, new.credentials, provider.auth.is_oauth()) {
        (Some(tokens), None, true) => Credential::OAuth(
            TokenSet::from_json(tokens.to_string().as_bytes(), now)
                .map_err(|e| ApiError::invalid("tokens", e))?,
        ),
        (None, Some(credentials), false) => {
            Credential::from_json(&provider.auth, credentials.to_string().as_bytes())
                .map_err(|e| ApiError::invalid("credentials", e))?
        }
        (_, _, true) => {
            return Err(ApiError::invalid(
                "tokens",
                "this provider uses OAuth: give its token response in tokens (and no credentials)",
            ));
        }
        (_, _, false) => {
            return Err(ApiError::invalid(
                "credentials",
                format!(
                    "this provider takes {} credentials: give them in credentials (and no tokens)",
                    provider.auth.kind()
                ),
            ));
        }
    };
    let store = current.checker.store();
    let added = crate::connections::add(
        config,
        store.as_ref(),
        AddConnection {
            provider: new.provider,
            name: new.name,
            owner: new.owner,
            account,
            allow_unknown_account: new.allow_unknown_account,
            credential,
            external_id,
            metadata,
        },
        now,
    )
    .await
    .map_err(add_refused)?;
    let view = ConnectionView::from(store.connection(added.id()).await?);
    Ok(self::added(&added, "connections", view))
}

/// Connections in id order, a page at a time, filtered by any of status, provider, owner and
/// external_id.
#[utoipa::path(
    get,
    path = "/v1/connections",
    operation_id = "listConnections",
    tag = "connections",
    params(
        ("status" = Option<ConnectionStatus>, Query),
        ("provider" = Option<String>, Query),
        ("owner" = Option<String>, Query),
        ("external_id" = Option<String>, Query),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "OK", body = Page<ConnectionView>),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Params,
) -> Result<Json<Page<ConnectionView>>, ApiError> {
    params.only(&[
        "status",
        "provider",
        "owner",
        "external_id",
        "limit",
        "cursor",
    ])?;
    let filter = ConnectionFilter {
        status: params.parsed("status")?,
        provider: params.parsed("provider")?,
        owner: params.parsed("owner")?,
        external_id: params.text("external_id").map(str::to_owned),
    };
    let limit = input::page_size(&params)?;
    let after: Option<ConnectionId> = params.parsed("cursor")?;
    let current = state.current();
    let read = current
        .checker
        .store()
        .list_connections(&filter, after.as_ref(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        read,
        limit,
        |c| c.id.to_string(),
        ConnectionView::from,
    )))
}

/// Everything about one connection but its tokens, with the pipelines using it and its
/// latest checks.
#[utoipa::path(
    get,
    path = "/v1/connections/{id}",
    operation_id = "getConnection",
    tag = "connections",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "OK", body = ConnectionView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id: ConnectionId = input::id("connection", &id)?;
    let current = state.current();
    let store = current.checker.store();
    let mut view = ConnectionView::from(store.connection(&id).await?);
    view.pipelines = Some(
        store
            .pipelines_of(&id)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect(),
    );
    view.recent_checks = Some(store.recent_checks(&id, 10).await?);
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionChange {
    #[serde(default)]
    name: Option<Name>,
    #[serde(default)]
    owner: Option<EmailAddress>,
    /// Replaces the metadata; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

/// A field that is present (even as null) is `Some`; an absent one stays `None` by default.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Changes the name, the owner (who gets the e-mails from now on) or the metadata.
#[utoipa::path(
    patch,
    path = "/v1/connections/{id}",
    operation_id = "updateConnection",
    tag = "connections",
    params(("id" = String, Path)),
    request_body(content = ConnectionChange, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = ConnectionView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<ConnectionChange>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id: ConnectionId = input::id("connection", &id)?;
    let metadata = match change.metadata {
        None => None,
        Some(m) => Some(metadata_text(m)?),
    };
    let update = ConnectionUpdate {
        name: change.name.map(String::from),
        owner: change.owner,
        metadata,
    };
    let current = state.current();
    let c = crate::connections::update(current.checker.store().as_ref(), &id, &update, Utc::now())
        .await?;
    Ok(Json(c.into()))
}

/// Deletes the connection and its tokens; with `revoke=true`, revokes them at the provider
/// first. Refused while pipelines use it.
#[utoipa::path(
    delete,
    path = "/v1/connections/{id}",
    operation_id = "deleteConnection",
    tag = "connections",
    params(("id" = String, Path), ("revoke" = Option<bool>, Query)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "connection-in-use", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The provider cannot revoke (no revocation_url)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The provider refused or could not be reached; the connection was kept", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    params.only(&["revoke"])?;
    let id: ConnectionId = input::id("connection", &id)?;
    let revoke = params.parsed::<bool>("revoke")?.unwrap_or(false);
    let current = state.current();
    crate::connections::remove(
        &current.config,
        current.checker.store().as_ref(),
        &id,
        revoke,
    )
    .await
    .map_err(|e| match e {
        RemoveError::Store(e) => e.into(),
        e @ (RemoveError::ProviderNotConfigured(_) | RemoveError::NoRevocationUrl(_)) => {
            ApiError::invalid("revoke", e)
        }
        RemoveError::Http(e) => {
            tracing::error!("cannot build the HTTP client: {e}");
            ApiError::Internal
        }
        e => ApiError::BadGateway(e.to_string()),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReauthorizeLink {
    url: String,
    expires_at: DateTime<Utc>,
}

/// A fresh reauthorize link, for the platform's own "Reconnect" button: the owner opens it and
/// authorizes again, which heals the connection and resumes its pipelines.
#[utoipa::path(
    post,
    path = "/v1/connections/{id}/reauthorize-link",
    operation_id = "createReauthorizeLink",
    tag = "connections",
    params(("id" = String, Path)),
    responses(
        (status = 201, description = "Created", body = ReauthorizeLink),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reauthorize_link(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ReauthorizeLink>), ApiError> {
    let id: ConnectionId = input::id("connection", &id)?;
    let current = state.current();
    let (url, expires_at) =
        crate::links::for_connection(current.checker.store().as_ref(), &current.config, &id)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(ReauthorizeLink { url, expires_at }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnectLink {
    /// A provider of the config that owners sign in to (OAuth).
    provider: ProviderId,
    /// The name the new connection will have.
    name: Name,
    /// Who is invited; owns the connection.
    owner: EmailAddress,
    /// Only a grant for this account is accepted, when set.
    #[serde(default)]
    account: Option<String>,
    /// The platform's own id for the connection to be.
    #[serde(default)]
    external_id: Option<String>,
    /// E-mail the link to the owner ("Connect your … account") instead of answering with it:
    /// the link is made when the e-mail is sent and exists nowhere else.
    #[serde(default)]
    email: bool,
}

/// An invitation queued for e-mail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvitationQueued {
    emailed_to: EmailAddress,
}

/// A link that lets the owner connect a new data source: the page names what will be
/// connected, and its button starts the provider's sign-in (or, for a provider of API keys or
/// passwords, its form takes them and tries them before creating anything). Single use; valid
/// for `[notices] connect_link_lifetime`. With `"email": true` the owner is e-mailed the link
/// instead (202).
#[utoipa::path(
    post,
    path = "/v1/connect-links",
    operation_id = "createConnectLink",
    tag = "connections",
    request_body(content = NewConnectLink, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = ReauthorizeLink),
        (status = 202, description = "Queued for e-mail to the owner", body = InvitationQueued),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn connect_link(
    State(state): State<Arc<ApiState>>,
    ApiJson(new): ApiJson<NewConnectLink>,
) -> Result<Response, ApiError> {
    let account =
        crate::connections::account(new.account).map_err(|e| ApiError::invalid("account", e))?;
    let invite = crate::store::connect::NewConnectLink {
        provider: new.provider,
        name: new.name.into(),
        owner: new.owner,
        external_id: input::external_id("external_id", new.external_id)?,
        account,
    };
    let current = state.current();
    let store = current.checker.store();
    match crate::connections::invite(&current.config, store.as_ref(), &invite, new.email)
        .await
        .map_err(add_refused)?
    {
        Invited::Link { url, expires_at } => Ok((
            StatusCode::CREATED,
            Json(ReauthorizeLink { url, expires_at }),
        )
            .into_response()),
        Invited::Emailed => {
            current.checker.outbox_signal().notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(InvitationQueued {
                    emailed_to: invite.owner,
                }),
            )
                .into_response())
        }
    }
}
