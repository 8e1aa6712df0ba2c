//! The re-entry form: for a connection that holds an API key or a password, its reauthorize
//! link opens a form instead of a sign-in. What is typed is tried with the provider's probe
//! before anything is stored: a key the provider refuses shows the form again with what it
//! said; a good one heals the connection exactly as an OAuth reauthorization does.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use secrecy::ExposeSecret;

use super::AppState;
use super::pages::ResumedView;
use super::reauth::internal;
use crate::check::{Provider, schedule};
use crate::classify::classify;
use crate::config::ProviderAuth;
use crate::connections::Credential;
use crate::domain::{Category, Phase, PipelineState};
use crate::store::Connection;

/// A form is posted from our own page: a browser says where a POST comes from, and one from
/// another site is refused (a link's token in the path is the capability; this is the second
/// lock). Clients that send no `Origin` (scripts, old browsers) are not browsers acting for
/// another site.
pub fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let ours = state.base_url.origin().ascii_serialization();
    origin == ours
}

pub fn refused_cross_site(state: &AppState) -> Response {
    state.pages.message(
        StatusCode::FORBIDDEN,
        "This form was sent from another site",
        &["Nothing was changed. Open the link from the e-mail and send the form from there."],
        &[],
    )
}

/// The form for `connection`, with what went wrong last time, if anything.
pub fn show(
    state: &AppState,
    provider: &Provider,
    c: &Connection,
    problem: Option<&str>,
) -> Response {
    let basic = provider.config.auth == ProviderAuth::Basic;
    state.pages.credentials_form(
        &c.name,
        &provider.config.display_name,
        basic,
        problem,
        if problem.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
    )
}

/// A posted form: tried at the provider, stored only if it works there.
pub async fn submit(
    state: &AppState,
    provider: &Provider,
    c: &Connection,
    link_hash: &[u8],
    body: &[u8],
) -> Response {
    let field = |name: &str| {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let json = match &provider.config.auth {
        ProviderAuth::Basic => {
            serde_json::json!({"username": field("username"), "password": field("password")})
        }
        _ => serde_json::json!({"api_key": field("api_key")}),
    };
    let credential = match Credential::from_json(&provider.config.auth, json.to_string().as_bytes())
    {
        Ok(c) => c,
        Err(e) => return show(state, provider, c, Some(&e)),
    };
    let tokens = credential.into_tokens();
    let Some(probe_url) = &provider.config.probe_url else {
        return internal(state, "form", "a key provider without a probe_url");
    };
    let checker = state.checker();
    let outcome = checker
        .http()
        .probe(probe_url, &provider.config.auth, &tokens.access_token)
        .await;
    let verdict = classify(Phase::Probe, &outcome, &provider.config.rules, Utc::now());
    if verdict.category != Category::Healthy {
        let words = match verdict.category.consequence() {
            crate::domain::Consequence::Broken => format!(
                "{} did not accept it: {}",
                provider.config.display_name,
                crate::notices::explain(verdict.category, &provider.config.display_name)
            ),
            _ => format!(
                "{} could not be asked just now ({}). Nothing was stored; please try again in a few minutes.",
                provider.config.display_name, verdict.category
            ),
        };
        // The provider's answer may quote what was typed: it is never shown back.
        let typed = tokens.access_token.expose_secret().to_owned();
        let words = if typed.is_empty() {
            words
        } else {
            words.replace(&typed, "[redacted]")
        };
        return show(state, provider, c, Some(&words));
    }
    let now = Utc::now();
    let next = schedule::after_success(
        now,
        None,
        checker.schedule().check_interval,
        &mut rand::thread_rng(),
    );
    let store = checker.store();
    let done = match store
        .reauthorize(&c.id, link_hash, &tokens, now, next)
        .await
    {
        Ok(d) => d,
        Err(e) => return internal(state, "storing the new credentials", e),
    };
    checker.outbox_signal().notify_one();
    tracing::info!(connection = %c.id, resumed = done.resumed.len(), "new credentials from the re-entry form");
    let resumed: Vec<ResumedView> = match store.pipelines_of(&c.id).await {
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
    let first = format!(
        "{} works with {} again, and its data is flowing.",
        c.name, provider.config.display_name
    );
    let mut paragraphs: Vec<&str> = vec![&first];
    if !resumed.is_empty() {
        paragraphs.push("These pipelines resumed where they stopped:");
    }
    state
        .pages
        .message(StatusCode::OK, "Reconnected", &paragraphs, &resumed)
}
