//! The re-entry form: for a connection that holds an API key or a password, its reauthorize
//! link opens a form instead of a sign-in. What is typed is tried with the provider's probe
//! before anything is stored: a key the provider refuses shows the form again with what it
//! said; a good one heals the connection exactly as an OAuth reauthorization does.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use secrecy::ExposeSecret;

use super::AppState;
use super::pages::CredentialsForm;
use crate::check::Provider;
use crate::classify::classify;
use crate::config::{AccountSource, ProviderAuth};
use crate::connections::Credential;
use crate::domain::{Category, Consequence, Phase};
use crate::store::Connection;

/// A form is posted from our own page: a browser says where a POST comes from, and one from
/// another site is refused (a link's token in the path is the capability; this is the second
/// lock). Browsers say it in `Sec-Fetch-Site`; our pages' `Referrer-Policy: no-referrer` makes
/// their `Origin` "null", so `Origin` decides only for older browsers that send a real one.
/// Clients that send neither (scripts) are not browsers acting for another site.
pub fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        // "none": the user's own action (a bookmark, the address bar), not another site's.
        return site == "same-origin" || site == "none";
    }
    match header(header::ORIGIN.as_str()) {
        Some(origin) if origin != "null" => origin == state.base_url.origin().ascii_serialization(),
        _ => true,
    }
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
    state.pages.credentials_form(CredentialsForm {
        connect: false,
        name: &c.name,
        provider: &provider.config,
        account: c.account.as_deref(),
        problem,
    })
}

/// What the owner typed, tried at the provider: the credential when the provider takes it (and,
/// when `account` is known and the probe names accounts, it is that account's); otherwise what
/// to tell the owner. Nothing is stored here.
pub async fn try_typed(
    state: &AppState,
    provider: &Provider,
    body: &[u8],
    account: Option<&str>,
) -> Result<Credential, String> {
    let config = &provider.config;
    let field = |name: &str| {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let json: serde_json::Map<String, serde_json::Value> = config
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), field(f.name).into()))
        .collect();
    let credential = Credential::from_json(
        &config.auth,
        serde_json::Value::Object(json).to_string().as_bytes(),
    )?;
    let Some(probe_url) = &config.probe_url else {
        return Err("This provider cannot be asked (it has no probe_url); please tell your data platform team.".into());
    };
    let secret = credential.secret();
    let checker = state.checker();
    let outcome = checker.http().probe(config, probe_url, &secret).await;
    let verdict = classify(Phase::Probe, &outcome, &config.rules, Utc::now());
    // The provider's answer may quote what was typed: it is never shown back.
    let redact = |words: String| {
        let typed = secret.expose_secret();
        if typed.is_empty() {
            words
        } else {
            words.replace(typed, "[redacted]")
        }
    };
    let what = if matches!(config.auth, ProviderAuth::Basic) {
        "user name and password"
    } else {
        "API key"
    };
    // What was typed is refused when the provider answers so (a 4xx other than "slow down");
    // anything else says nothing about it.
    let refused = verdict.category.consequence() == Consequence::Broken
        || verdict
            .http_status
            .is_some_and(|s| (400..500).contains(&s) && s != 429);
    if refused {
        return Err(redact(format!(
            "{} did not accept this {what}; it answered {}. Check that you copied all of it and that it is still active at {}.",
            config.display_name, verdict.detail, config.display_name
        )));
    }
    if verdict.category != Category::Healthy {
        return Err(format!(
            "{} could not be asked just now ({}). Nothing was stored; please try again in a few minutes.",
            config.display_name, verdict.detail
        ));
    }
    if let (Some(expected), AccountSource::Probe(_)) = (account, &config.account_from) {
        let tokens = credential.secret_tokens();
        let identity = crate::account::of_grant(config, &tokens, checker.http()).await;
        if !identity.is(expected) {
            return Err(redact(format!(
                "That {} belongs to {}, but this is for account {expected}. Enter the one of {expected}.",
                if matches!(config.auth, ProviderAuth::Basic) {
                    "login"
                } else {
                    "key"
                },
                identity
                    .primary()
                    .unwrap_or("an account we could not identify"),
            )));
        }
    }
    Ok(credential)
}

/// A posted form: tried at the provider, stored only if it works there.
pub async fn submit(
    state: &AppState,
    provider: &Provider,
    c: &Connection,
    link_hash: &[u8],
    body: &[u8],
) -> Response {
    let tokens = match try_typed(state, provider, body, c.account.as_deref()).await {
        Ok(credential) => credential.into_tokens(),
        Err(words) => return show(state, provider, c, Some(&words)),
    };
    let first = format!(
        "{} works with {} again, and its data is flowing.",
        c.name, provider.config.display_name
    );
    super::reauth::heal(state, c, link_hash, &tokens, &first).await
}
