//! The development provider's endpoints and its two pages (consent, and the grants with their
//! revoke buttons).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use super::{DevProvider, DevProviderError, Refusal};
use crate::config::{Config, DevProviderConfig, Url};

const LAYOUT: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ title }} · Development provider</title>
<style>{{ style|safe }}</style></head>
<body><main><header>Development provider (for trying credwatch; never in production)</header>
<h1>{{ title }}</h1>
{% block body %}{% endblock %}
</main></body></html>"#;

const CONSENT: &str = r#"{% extends "layout.html" %}{% block body %}
<p><b>{{ client }}</b> asks for access to your account{% if scope %} ({{ scope }}){% endif %}, with a
refresh token that lets it keep access until you revoke it.</p>
<p>Which test account do you sign in as? No password: this provider is for trying things out.</p>
<form method="post">
{% for name, value in hidden %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}{% for account in accounts %}<p><button type="submit" name="account" value="{{ account }}">Allow as {{ account }}</button></p>
{% endfor %}<p><button type="submit" name="deny" value="1">Deny</button></p>
</form>
{% endblock %}"#;

const GRANTS: &str = r#"{% extends "layout.html" %}{% block body %}
{% if grants %}<p>Revoking a grant is what an owner does at a real provider: credwatch finds out at
its next check, marks the connection broken, pauses its pipelines and e-mails the owner.</p>
<table><thead><tr><th>Account</th><th>Granted</th><th>Refreshed</th><th>State</th><th></th></tr></thead><tbody>
{% for g in grants %}<tr><td>{{ g.account }}</td><td>{{ g.created }}</td><td>{% if g.refreshes == 0 %}not yet{% elif g.refreshes == 1 %}once{% else %}{{ g.refreshes }} times{% endif %}{% if g.refreshed %}, last {{ g.refreshed }}{% endif %}</td>
<td>{% if g.revoked %}revoked {{ g.revoked }}{% else %}live{% endif %}</td>
<td>{% if not g.revoked %}<form method="post" action="/grants/{{ g.id }}/revoke"><button type="submit">Revoke</button></form>{% endif %}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p>No grants yet. Connect an account through credwatch (a connect link, or
<code>credwatch connection invite</code>) and it appears here.</p>{% endif %}
{% endblock %}"#;

struct Routes {
    provider: Arc<DevProvider>,
    client_id: String,
    client_secret: Option<SecretString>,
    pages: minijinja::Environment<'static>,
}

/// The listener and routes, when the config has `[dev_provider]`.
pub async fn bind(
    config: &Config,
) -> Result<Option<(tokio::net::TcpListener, Router)>, DevProviderError> {
    let Some(dev) = &config.dev_provider else {
        return Ok(None);
    };
    let oauth = config
        .providers
        .get(&dev.provider)
        .and_then(|p| p.oauth())
        .ok_or_else(|| DevProviderError::NotOAuth(dev.provider.to_string()))?;
    let mut pages = minijinja::Environment::new();
    pages.add_template("layout.html", LAYOUT)?;
    pages.add_template("consent.html", CONSENT)?;
    pages.add_template("grants.html", GRANTS)?;
    let routes = Arc::new(Routes {
        provider: DevProvider::load(dev.clone())?,
        client_id: oauth.client_id.clone(),
        client_secret: oauth.client_secret.clone(),
        pages,
    });
    let listener = tokio::net::TcpListener::bind(dev.listen)
        .await
        .map_err(|source| DevProviderError::Bind {
            addr: dev.listen,
            source,
        })?;
    tracing::warn!(
        "development OAuth provider at http://{} (any test account, no password): for trying \
         credwatch out, never for production",
        dev.listen
    );
    let router = Router::new()
        .route("/", get(grants_page))
        .route("/authorize", get(consent_page).post(consent_given))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .route("/revoke", post(revoke_token))
        .route("/grants/{id}/revoke", post(revoke_grant))
        .route("/accounts/revoke", post(revoke_account_route))
        .with_state(routes);
    Ok(Some((listener, router)))
}

/// `credwatch dev-provider revoke ACCOUNT`: asks the running provider, as its page would.
pub async fn revoke_account(
    config: &DevProviderConfig,
    account: &str,
) -> Result<usize, DevProviderError> {
    let url = format!("http://{}/accounts/revoke", config.listen);
    let answer = reqwest::Client::new()
        .post(&url)
        .form(&[("account", account)])
        .send()
        .await
        .map_err(|e| {
            DevProviderError::Command(format!(
                "nothing answers at {url} ({e}); the daemon serves the development provider: is \
                 `credwatch run` running with this config?"
            ))
        })?;
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| DevProviderError::Command(format!("{url} answered oddly: {e}")))?;
    body["revoked"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| DevProviderError::Command(format!("{url} answered oddly: {body}")))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn page(routes: &Routes, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    match routes.pages.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(body) => {
            let mut response = (status, Html(body)).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                crate::http::pages::content_security_policy(),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => {
            tracing::error!("dev_provider: page {name}: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

/// A redirect URI we may send a code to: the daemon's own callback, on this machine.
fn loopback_redirect(uri: &str) -> Option<Url> {
    let url = Url::parse(uri).ok()?;
    let host = url.host_str()?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (matches!(url.scheme(), "http" | "https") && loopback).then_some(url)
}

struct Authorization {
    redirect: Url,
    /// The request's parameters, carried through the consent form.
    hidden: Vec<(&'static str, String)>,
}

/// An authorization request refused: on a page when the client or its redirect URI is wrong
/// (a code must never go to an unknown place), else back to the client with `error`.
enum Refused {
    Page(String),
    Back {
        redirect: Box<Url>,
        state: String,
        problem: &'static str,
    },
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Page(message) => bad_request(message),
            Refused::Back {
                redirect,
                state,
                problem,
            } => back(
                *redirect,
                &state,
                &[("error", "invalid_request"), ("error_description", problem)],
            ),
        }
    }
}

fn authorization(routes: &Routes, p: &HashMap<String, String>) -> Result<Authorization, Refused> {
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("client_id") != routes.client_id {
        return Err(Refused::Page(format!(
            "unknown client_id {:?} (this provider serves {:?})",
            get("client_id"),
            routes.client_id
        )));
    }
    let Some(redirect) = loopback_redirect(&get("redirect_uri")) else {
        return Err(Refused::Page(
            "redirect_uri must be an http(s) address on this machine".into(),
        ));
    };
    let problem = if get("response_type") != "code" {
        Some("response_type must be code")
    } else if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        Some("PKCE with code_challenge_method=S256 is required")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(Refused::Back {
            redirect: Box::new(redirect),
            state: get("state"),
            problem,
        });
    }
    let hidden = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ]
    .into_iter()
    .map(|k| (k, get(k)))
    .collect();
    Ok(Authorization { redirect, hidden })
}

fn back(mut redirect: Url, state: &str, pairs: &[(&str, &str)]) -> Response {
    {
        let mut q = redirect.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if !state.is_empty() {
            q.append_pair("state", state);
        }
    }
    Redirect::to(redirect.as_str()).into_response()
}

async fn consent_page(
    State(routes): State<Arc<Routes>>,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    match authorization(&routes, &p) {
        Ok(Authorization { hidden, .. }) => page(
            &routes,
            StatusCode::OK,
            "consent.html",
            minijinja::context! {
                title => "Sign in and allow access",
                style => crate::http::pages::STYLE,
                client => routes.client_id,
                scope => p.get("scope"),
                hidden => hidden,
                accounts => routes.provider.config().accounts.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            },
        ),
        Err(refused) => refused.into_response(),
    }
}

async fn consent_given(
    State(routes): State<Arc<Routes>>,
    Form(p): Form<HashMap<String, String>>,
) -> Response {
    let redirect = match authorization(&routes, &p) {
        Ok(a) => a.redirect,
        Err(refused) => return refused.into_response(),
    };
    let state = p.get("state").map(String::as_str).unwrap_or_default();
    if p.contains_key("deny") {
        return back(redirect, state, &[("error", "access_denied")]);
    }
    let account = p.get("account").map(String::as_str).unwrap_or_default();
    if !routes
        .provider
        .config()
        .accounts
        .iter()
        .any(|a| a.as_str() == account)
    {
        return bad_request(format!("{account:?} is not one of the test accounts"));
    }
    let code = routes.provider.approve(
        account,
        p.get("scope").map(String::as_str).unwrap_or_default(),
        redirect.as_str(),
        p.get("code_challenge")
            .map(String::as_str)
            .unwrap_or_default(),
        now(),
    );
    tracing::info!("dev_provider: {account} allowed access");
    back(redirect, state, &[("code", &code)])
}

fn oauth_error(status: StatusCode, Refusal(error, description): Refusal) -> Response {
    let mut r = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The client authenticates with HTTP Basic (RFC 6749 §2.3.1, names form-encoded) or in the body.
fn client_ok(routes: &Routes, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            Some((decode(id)?, decode(secret)?))
        });
    let (id, secret) = from_header.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    let expected = routes
        .client_secret
        .as_ref()
        .map(|s| s.expose_secret().to_owned())
        .unwrap_or_default();
    id == routes.client_id && secret == expected
}

/// The token and revocation endpoints' first step: 401 `invalid_client` for a wrong client.
fn refused_client(
    routes: &Routes,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Response> {
    (!client_ok(routes, headers, form)).then(|| {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            Refusal("invalid_client", "unknown client or wrong secret".into()),
        )
    })
}

#[derive(Serialize)]
struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    refresh_token: String,
    scope: String,
}

async fn token(
    State(routes): State<Arc<Routes>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_client(&routes, &headers, &form) {
        return refused;
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let issued = match get("grant_type") {
        "authorization_code" => routes.provider.exchange(
            get("code"),
            get("redirect_uri"),
            get("code_verifier"),
            now(),
        ),
        "refresh_token" => routes.provider.refresh(get("refresh_token"), now()),
        other => Err(Refusal(
            "unsupported_grant_type",
            format!("{other:?}: only authorization_code and refresh_token"),
        )),
    };
    match issued {
        Ok(i) => {
            let mut r = Json(TokenAnswer {
                access_token: i.access_token,
                token_type: "Bearer",
                expires_in: i.expires_in,
                refresh_token: i.refresh_token,
                scope: i.scope,
            })
            .into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(refusal) => oauth_error(StatusCode::BAD_REQUEST, refusal),
    }
}

async fn userinfo(State(routes): State<Arc<Routes>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| routes.provider.account_of(t, now())) {
        Some(account) => Json(json!({"sub": account, "email": account})).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Bearer error=\"invalid_token\", error_description=\"unknown, expired or revoked access token\"",
            )],
        )
            .into_response(),
    }
}

/// RFC 7009: 200 whether or not the token was known.
async fn revoke_token(
    State(routes): State<Arc<Routes>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(refused) = refused_client(&routes, &headers, &form) {
        return refused;
    }
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    routes.provider.revoke_token(token, now());
    StatusCode::OK.into_response()
}

async fn revoke_grant(State(routes): State<Arc<Routes>>, Path(id): Path<String>) -> Response {
    let n = routes
        .provider
        .revoke("revoked on the provider's page", now(), |g| g.id == id);
    tracing::info!("dev_provider: grant {id} revoked on its page ({n} live)");
    Redirect::to("/").into_response()
}

async fn revoke_account_route(
    State(routes): State<Arc<Routes>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let account = form.get("account").cloned().unwrap_or_default();
    let n = routes
        .provider
        .revoke("revoked with credwatch dev-provider revoke", now(), |g| {
            g.account == account
        });
    tracing::info!("dev_provider: {n} grant(s) of {account} revoked by command");
    Json(json!({"revoked": n})).into_response()
}

async fn grants_page(State(routes): State<Arc<Routes>>) -> Response {
    let at = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default()
    };
    let grants: Vec<_> = routes
        .provider
        .grants()
        .into_iter()
        .rev()
        .map(|g| {
            json!({
                "id": g.id,
                "account": g.account,
                "created": at(g.created_at),
                "refreshes": g.refreshes,
                "refreshed": g.refreshed_at.map(at),
                "revoked": g.revoked.map(|r| format!("{} ({})", at(r.at), r.why)),
            })
        })
        .collect();
    page(
        &routes,
        StatusCode::OK,
        "grants.html",
        minijinja::context! {
            title => "Grants",
            style => crate::http::pages::STYLE,
            grants => grants,
        },
    )
}
