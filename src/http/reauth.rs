//! The owner's way back: the link from the e-mail (a GET that changes nothing, since mail
//! scanners prefetch links), the button that starts a fresh OAuth authorization (state and PKCE),
//! and the callback that checks the account and heals the connection in one transaction.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use serde::Deserialize;

use super::AppState;
use super::pages::ResumedView;
use crate::check::{code_request, schedule};
use crate::classify::Outcome;
use crate::domain::PipelineState;
use crate::links;
use crate::store::{Connection, ReauthLink};
use crate::tokens::TokenSet;

/// An authorization must come back within this; the owner is on the provider's page meanwhile.
const SESSION_LIFETIME: TimeDelta = TimeDelta::minutes(15);

pub(super) fn internal(state: &AppState, what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!("reauthorize: {what}: {e}");
    state.pages.message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        &["Something went wrong on our side. Nothing was changed; please try the link again in a few minutes."],
        &[],
    )
}

/// The link's connection, or the page that says why the link does not work.
async fn valid_link(
    state: &AppState,
    token: &str,
) -> Result<(ReauthLink, Connection, Vec<u8>), Response> {
    let hash = links::hash(token);
    let link = match state.checker().store().reauth_link(&hash).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(state.pages.message(
                StatusCode::NOT_FOUND,
                "This link is not valid",
                &["This reconnect link is not one of ours. Check that the whole link was copied from the e-mail."],
                &[],
            ));
        }
        Err(e) => return Err(internal(state, "reading a link", e)),
    };
    let connection = match state.checker().store().connection(&link.connection).await {
        Ok(c) => c,
        Err(crate::store::StoreError::ConnectionNotFound(_)) => {
            return Err(state.pages.message(
                StatusCode::GONE,
                "This link has expired",
                &["This reconnect link has expired or was already used. A newer e-mail has a fresh link, or ask your data platform team for one."],
                &[],
            ));
        }
        Err(e) => return Err(internal(state, "reading a connection", e)),
    };
    if link.used_at.is_some() || link.expires_at <= Utc::now() {
        // The same words whatever the reason: a stale link says nothing about the connection.
        return Err(state.pages.message(
            StatusCode::GONE,
            "This link has expired",
            &["This reconnect link has expired or was already used. A newer e-mail has a fresh link, or ask your data platform team for one."],
            &[],
        ));
    }
    Ok((link, connection, hash))
}

fn provider_name(state: &AppState, c: &Connection) -> String {
    state
        .checker()
        .provider(&c.provider)
        .map(|p| p.config.display_name.clone())
        .unwrap_or_else(|| c.provider.to_string())
}

/// The provider of a connection that holds a key or a password (it gets the re-entry form).
fn keyed(state: &AppState, c: &Connection) -> Option<Arc<crate::check::Provider>> {
    state
        .checker()
        .provider(&c.provider)
        .filter(|p| !p.config.auth.is_oauth())
        .cloned()
}

/// GET: shows what the link is for; starts nothing.
pub async fn page(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let (link, connection, _) = match valid_link(&state, &token).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if let Some(provider) = keyed(&state, &connection) {
        return super::form::show(&state, &provider, &connection, None);
    }
    let since = match link.incident {
        Some(id) => state
            .checker()
            .store()
            .incident(id)
            .await
            .ok()
            .map(|i| i.opened_at.format("%Y-%m-%d %H:%M UTC").to_string()),
        None => None,
    };
    let provider = provider_name(&state, &connection);
    state.pages.reauthorize(
        &connection.name,
        &provider,
        connection.account.as_deref(),
        since,
    )
}

/// POST: a fresh authorization (random single-use `state`, PKCE S256), then off to the provider.
/// For a key or a password, the form's POST: tried at the provider, then stored.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !super::form::same_origin(&state, &headers) {
        return super::form::refused_cross_site(&state);
    }
    let (_, connection, link_hash) = match valid_link(&state, &token).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if let Some(provider) = keyed(&state, &connection) {
        return super::form::submit(&state, &provider, &connection, &link_hash, &body).await;
    }
    let Some(provider) = state.checker().provider(&connection.provider).cloned() else {
        return internal(
            &state,
            "provider",
            format!("{} is not configured", connection.provider),
        );
    };
    let csrf = links::random_token();
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let verifier = SecretString::from(verifier.secret().to_owned());
    let now = Utc::now();
    match state
        .checker()
        .store()
        .start_oauth_session(
            &link_hash,
            &links::hash(&csrf),
            &verifier,
            now,
            now + SESSION_LIFETIME,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return state.pages.message(
                StatusCode::GONE,
                "This link has expired",
                &["This link expired a moment ago. A newer e-mail has a fresh link."],
                &[],
            );
        }
        Err(e) => return internal(&state, "starting an authorization", e),
    }
    authorize_redirect(
        &state,
        &provider,
        csrf,
        challenge,
        connection.account.as_deref(),
    )
}

/// Off to the provider's authorization page: our callback, PKCE, the provider's scopes and
/// `authorize_params`, and the account expected (so the provider can preselect it).
pub(super) fn authorize_redirect(
    state: &AppState,
    provider: &crate::check::Provider,
    csrf: String,
    challenge: oauth2::PkceCodeChallenge,
    login_hint: Option<&str>,
) -> Response {
    let Some((client, oauth)) = provider.oauth() else {
        return internal(
            state,
            "starting a sign-in",
            format!("{} is not an OAuth provider", provider.id()),
        );
    };
    let redirect = oauth2::RedirectUrl::from_url(state.callback_url());
    let mut request = client
        .authorize_url(|| oauth2::CsrfToken::new(csrf))
        .set_redirect_uri(std::borrow::Cow::Owned(redirect))
        .set_pkce_challenge(challenge)
        .add_scopes(oauth.scopes.iter().map(|s| oauth2::Scope::new(s.clone())));
    for (k, v) in &oauth.authorize_params {
        request = request.add_extra_param(k.clone(), v.clone());
    }
    if let Some(account) = login_hint {
        request = request.add_extra_param("login_hint", account.to_owned());
    }
    let (url, _) = request.url();
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct CallbackParams {
    pub(super) state: Option<String>,
    pub(super) code: Option<String>,
    pub(super) error: Option<String>,
    pub(super) error_description: Option<String>,
}

/// The provider sends the owner back here.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    Query(q): Query<CallbackParams>,
) -> Response {
    let invalid = |state: &AppState| {
        state.pages.message(
            StatusCode::BAD_REQUEST,
            "This sign-in cannot be used",
            &["This sign-in is not one we started, or it was already used or took too long. Nothing was changed. Open the link from the e-mail again to start over."],
            &[],
        )
    };
    let Some(csrf) = q.state.clone() else {
        return invalid(&state);
    };
    let csrf = csrf.as_str();
    let checker = state.checker();
    let store = checker.store();
    let session = match store
        .take_oauth_session(&links::hash(csrf), Utc::now())
        .await
    {
        Ok(Some(s)) => s,
        // Not a reauthorization: perhaps a new connection from a connect link.
        Ok(None) => return super::connect::callback(&state, csrf, q).await,
        Err(e) => return internal(&state, "reading the authorization", e),
    };
    let connection = match store.connection(&session.connection).await {
        Ok(c) => c,
        Err(e) => return internal(&state, "reading a connection", e),
    };
    let provider_display = provider_name(&state, &connection);
    if let Some(error) = q.error.as_deref() {
        if error == "access_denied" {
            return state.pages.message(
                StatusCode::OK,
                "Nothing was changed",
                &[
                    &format!("You cancelled at {provider_display}. The data source stays disconnected and its pipelines stay paused."),
                    "Whenever you are ready, open the link from the e-mail again.",
                ],
                &[],
            );
        }
        tracing::warn!(connection = %connection.id, error, description = q.error_description.as_deref().unwrap_or(""),
            "the provider refused a reauthorization");
        return state.pages.message(
            StatusCode::BAD_GATEWAY,
            "The provider refused",
            &[&format!("{provider_display} did not grant access ({error}). Nothing was changed. Try the link from the e-mail again, or forward it to your data platform team.")],
            &[],
        );
    }
    let Some(code) = q.code else {
        return invalid(&state);
    };
    let Some(provider) = state.checker().provider(&connection.provider).cloned() else {
        return internal(
            &state,
            "provider",
            format!("{} is not configured", connection.provider),
        );
    };
    let http = checker.http();
    let tokens = match exchange_code(&state, &provider, code, &session.verifier).await {
        Ok(tokens) => tokens,
        Err(why) => {
            tracing::warn!(connection = %connection.id, outcome = %why, "the code exchange failed");
            return state.pages.message(
                StatusCode::BAD_GATEWAY,
                "The provider did not complete the sign-in",
                &[&format!("{provider_display} did not hand over access. Nothing was changed. Please try the link from the e-mail again in a few minutes.")],
                &[],
            );
        }
    };
    // Another account's data must never flow down this connection's pipelines: both sides
    // must be known, and the same.
    let signed_in = crate::account::of_grant(&provider.config, &tokens, http).await;
    let Some(expected) = &connection.account else {
        tracing::warn!(connection = %connection.id, "a reauthorization for a connection of unknown account; refused");
        return state.pages.message(
            StatusCode::FORBIDDEN,
            "This data source cannot be reconnected here",
            &[
                "We do not know which account this data source was set up with, so we cannot make sure you signed in to the same one.",
                "Nothing was changed. Please forward the e-mail to your data platform team: they can connect it again for you.",
            ],
            &[],
        );
    };
    if !signed_in.is(expected) {
        tracing::warn!(connection = %connection.id, "a reauthorization signed in as another account; refused");
        return state.pages.message(
            StatusCode::FORBIDDEN,
            "That is a different account",
            &[
                &format!("You signed in to {provider_display} as {}, but this data source reads from account {expected}.", signed_in.primary().unwrap_or("an account we could not identify")),
                "Nothing was changed. Open the link from the e-mail again and sign in as that account.",
            ],
            &[],
        );
    }
    let first = format!(
        "{} is connected to {provider_display} again, and its data is flowing.",
        connection.name
    );
    heal(&state, &connection, &session.link_hash, &tokens, &first).await
}

/// Stores an owner's new credentials with the link they came through (ending the incident,
/// resuming the pipelines, queueing the *Reconnected* e-mail, in one transaction), and the
/// page that says so: the same for a sign-in and for the re-entry form.
pub(super) async fn heal(
    state: &AppState,
    connection: &Connection,
    link_hash: &[u8],
    tokens: &TokenSet,
    first: &str,
) -> Response {
    let checker = state.checker();
    let store = checker.store();
    let now = Utc::now();
    let next = schedule::after_success(now, tokens.expires_at, checker.schedule().check_interval);
    let done = match store
        .reauthorize(&connection.id, link_hash, tokens, now, next)
        .await
    {
        Ok(d) => d,
        Err(e) => return internal(state, "storing the new credentials", e),
    };
    checker.outbox_signal().notify_one();
    tracing::info!(connection = %connection.id, resumed = done.resumed.len(), "reconnected by its owner");
    let resumed: Vec<ResumedView> = match store.pipelines_of(&connection.id).await {
        Ok(ps) => ps
            .into_iter()
            .filter(|p| p.state == PipelineState::Running && done.resumed.contains(&p.id))
            .map(|p| ResumedView {
                name: p.name,
                position: p.position.map(String::from),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let paragraphs: Vec<&str> = if resumed.is_empty() {
        vec![first]
    } else {
        vec![first, "These pipelines resumed where they stopped:"]
    };
    state
        .pages
        .message(StatusCode::OK, "Reconnected", &paragraphs, &resumed)
}

/// The authorization code for tokens, at the provider's token endpoint; `Err` says (for the
/// log) why not.
pub(super) async fn exchange_code(
    state: &AppState,
    provider: &crate::check::Provider,
    code: String,
    verifier: &SecretString,
) -> Result<TokenSet, String> {
    let checker = state.checker();
    let Some((client, oauth)) = provider.oauth() else {
        return Err(format!("{} is not an OAuth provider", provider.id()));
    };
    let outcome = match code_request(client, code, verifier, &state.callback_url()).await {
        Some(request) => checker.http().send_token(request, oauth).await,
        None => return Err("oauth2 built no request".into()),
    };
    match &outcome {
        Outcome::Response(r) if (200..300).contains(&r.status) => {
            TokenSet::from_json(&r.body, Utc::now())
                .map(|t| t.new_grant(oauth.issues_refresh_tokens))
                .map_err(|_| describe(&outcome))
        }
        _ => Err(describe(&outcome)),
    }
}

/// A failed exchange in a log line: status and size, never the body (it may hold a token).
fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Transport(t) => t.message.clone(),
        Outcome::Response(r) => format!("HTTP {} ({} bytes)", r.status, r.body.len()),
    }
}
