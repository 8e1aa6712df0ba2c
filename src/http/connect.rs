//! Connecting a new data source from a link: the page (a GET that starts nothing), the button
//! that starts the same OAuth authorization as reauthorizing, and the callback's end of it,
//! which stores the grant through the same `connections::add` as the API and the command line.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;

use super::AppState;
use super::pages::CredentialsForm;
use super::reauth::{CallbackParams, authorize_redirect, exchange_code, internal};
use crate::connections::{AddConnection, AddError, Credential};
use crate::links;
use crate::store::connect::ConnectLink;

const SESSION_LIFETIME: TimeDelta = TimeDelta::minutes(15);

fn stale(state: &AppState) -> Response {
    // The same words whatever the reason: a stale link says nothing about what it was for.
    state.pages.message(
        StatusCode::GONE,
        "This link has expired",
        &["This link has expired or was already used. Ask your data platform team for a new one."],
        &[],
    )
}

async fn valid_link(state: &AppState, token: &str) -> Result<(ConnectLink, Vec<u8>), Response> {
    let hash = links::hash(token);
    match state.checker().store().connect_link(&hash).await {
        Ok(Some(link)) if link.used_at.is_none() && link.expires_at > Utc::now() => {
            Ok((link, hash))
        }
        Ok(Some(_)) => Err(stale(state)),
        Ok(None) => Err(state.pages.message(
            StatusCode::NOT_FOUND,
            "This link is not valid",
            &["This link is not one of ours. Check that the whole link was copied."],
            &[],
        )),
        Err(e) => Err(internal(state, "reading a connect link", e)),
    }
}

fn provider_name(state: &AppState, link: &ConnectLink) -> String {
    state
        .checker()
        .provider(&link.invite.provider)
        .map(|p| p.config.display_name.clone())
        .unwrap_or_else(|| link.invite.provider.to_string())
}

/// GET: what will be connected; starts nothing (mail scanners prefetch links).
pub async fn page(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let (link, _) = match valid_link(&state, &token).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if let Some(provider) = keyed(&state, &link) {
        return form(&state, &provider, &link, None);
    }
    let provider = provider_name(&state, &link);
    state
        .pages
        .connect(&link.invite.name, &provider, link.invite.account.as_deref())
}

/// The provider of a link whose owner types a key or a password (the form, not a sign-in).
fn keyed(state: &AppState, link: &ConnectLink) -> Option<Arc<crate::check::Provider>> {
    state
        .checker()
        .provider(&link.invite.provider)
        .filter(|p| !p.config.auth.is_oauth())
        .cloned()
}

fn form(
    state: &AppState,
    provider: &crate::check::Provider,
    link: &ConnectLink,
    problem: Option<&str>,
) -> Response {
    state.pages.credentials_form(CredentialsForm {
        connect: true,
        name: &link.invite.name,
        provider: &provider.config,
        account: link.invite.account.as_deref(),
        problem,
    })
}

/// POST: a fresh authorization (state and PKCE), then off to the provider. For a key or a
/// password, the form's POST: tried at the provider, then the connection is created.
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !super::form::same_origin(&state, &headers) {
        return super::form::refused_cross_site(&state);
    }
    let (link, link_hash) = match valid_link(&state, &token).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    if let Some(provider) = keyed(&state, &link) {
        let account = link.invite.account.as_deref();
        return match super::form::try_typed(&state, &provider, &body, account).await {
            Ok(credential) => create(&state, &link_hash, &link, credential).await,
            Err(words) => form(&state, &provider, &link, Some(&words)),
        };
    }
    let Some(provider) = state.checker().provider(&link.invite.provider).cloned() else {
        return internal(
            &state,
            "provider",
            format!("{} is not configured", link.invite.provider),
        );
    };
    let csrf = links::random_token();
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let verifier = SecretString::from(verifier.secret().to_owned());
    let now = Utc::now();
    match state
        .checker()
        .store()
        .start_connect_session(
            &link_hash,
            &links::hash(&csrf),
            &verifier,
            now,
            now + SESSION_LIFETIME,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return stale(&state),
        Err(e) => return internal(&state, "starting an authorization", e),
    }
    authorize_redirect(
        &state,
        &provider,
        csrf,
        challenge,
        link.invite.account.as_deref(),
    )
}

/// The provider sent the owner back with an authorization started from a connect page.
pub(super) async fn callback(state: &AppState, csrf: &str, q: CallbackParams) -> Response {
    let invalid = || {
        state.pages.message(
            StatusCode::BAD_REQUEST,
            "This sign-in cannot be used",
            &["This sign-in is not one we started, or it was already used or took too long. Nothing was changed. Open the link again to start over."],
            &[],
        )
    };
    let store = state.checker().store().clone();
    let session = match store
        .take_connect_session(&links::hash(csrf), Utc::now())
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return invalid(),
        Err(e) => return internal(state, "reading the authorization", e),
    };
    let link = match store.connect_link(&session.link_hash).await {
        Ok(Some(l)) => l,
        Ok(None) => return stale(state),
        Err(e) => return internal(state, "reading a connect link", e),
    };
    let provider_display = provider_name(state, &link);
    if let Some(error) = q.error.as_deref() {
        if error == "access_denied" {
            return state.pages.message(
                StatusCode::OK,
                "Nothing was connected",
                &[&format!("You cancelled at {provider_display}. Whenever you are ready, open the link again.")],
                &[],
            );
        }
        tracing::warn!(
            error,
            description = q.error_description.as_deref().unwrap_or(""),
            "the provider refused a new connection's authorization"
        );
        return state.pages.message(
            StatusCode::BAD_GATEWAY,
            "The provider refused",
            &[&format!("{provider_display} did not grant access ({error}). Nothing was created. Try the link again, or ask your data platform team.")],
            &[],
        );
    }
    let Some(code) = q.code else { return invalid() };
    let checker = state.checker();
    let Some(provider) = checker.provider(&link.invite.provider).cloned() else {
        return internal(
            state,
            "provider",
            format!("{} is not configured", link.invite.provider),
        );
    };
    let tokens = match exchange_code(state, &provider, code, &session.verifier).await {
        Ok(t) => t,
        Err(why) => {
            tracing::warn!(outcome = %why, "the code exchange for a new connection failed");
            return state.pages.message(
                StatusCode::BAD_GATEWAY,
                "The provider did not complete the sign-in",
                &[&format!("{provider_display} did not hand over access. Nothing was created. Please try the link again in a few minutes.")],
                &[],
            );
        }
    };
    // The account is checked before the link is used up: signing in as the wrong account
    // leaves the link working for the right one.
    let signed_in = crate::account::of_grant(&provider.config, &tokens, checker.http()).await;
    if let Some(expected) = &link.invite.account
        && !signed_in.is(expected)
    {
        return state.pages.message(
            StatusCode::FORBIDDEN,
            "That is a different account",
            &[
                &format!("You signed in to {provider_display} as {}, but this link is for account {expected}.", signed_in.primary().unwrap_or("an account we could not identify")),
                "Nothing was created. Open the link again and sign in as that account.",
            ],
            &[],
        );
    }
    create(state, &session.link_hash, &link, Credential::OAuth(tokens)).await
}

/// Uses the link up and creates its connection through the same `connections::add` as the API
/// and the command line.
async fn create(
    state: &AppState,
    link_hash: &[u8],
    link: &ConnectLink,
    credential: Credential,
) -> Response {
    let store = state.checker().store().clone();
    let provider_display = provider_name(state, link);
    let now = Utc::now();
    match store.use_connect_link(link_hash, now).await {
        Ok(true) => {}
        Ok(false) => return stale(state),
        Err(e) => return internal(state, "using a connect link", e),
    }
    // A key or a password names no account unless the probe does: the link, which the
    // platform made for this owner, is what vouches for it.
    let allow_unknown_account = !matches!(credential, Credential::OAuth(_));
    let new = AddConnection {
        provider: link.invite.provider.clone(),
        name: match link.invite.name.parse() {
            Ok(n) => n,
            Err(e) => return internal(state, "the link's name", e),
        },
        owner: link.invite.owner.clone(),
        account: link.invite.account.clone(),
        allow_unknown_account,
        credential,
        external_id: link.invite.external_id.clone(),
        metadata: None,
    };
    let config = state.config();
    match crate::connections::add(&config, store.as_ref(), new, now).await {
        Ok(added) => {
            let id = added.id().clone();
            if let Err(e) = store.connect_link_created(link_hash, &id).await {
                tracing::error!(connection = %id, "cannot note the link's connection: {e}");
            }
            tracing::info!(connection = %id, provider = %link.invite.provider, "connected from a link by its owner");
            state.pages.message(
                StatusCode::OK,
                "Connected",
                &[&format!("{} is connected to {provider_display}. Its data will start flowing; you can close this page.", link.invite.name)],
                &[],
            )
        }
        Err(AddError::AccountUnknown { .. }) => state.pages.message(
            StatusCode::FORBIDDEN,
            "We could not tell which account this is",
            &["The provider did not say which account you signed in as, so nothing was created. Please ask your data platform team to connect it for you."],
            &[],
        ),
        Err(e) => internal(state, "storing the new connection", e),
    }
}
