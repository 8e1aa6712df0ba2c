//! The one HTTP client: every call to a provider goes through here, with a deadline, a cap on
//! the answer's size, and no redirects. It returns what happened, never an interpretation; that
//! is the classifier's job.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::classify::{Outcome, Response, TransportFailure, TransportKind};
use crate::config::{
    ClientAuth, KeyPlacement, LimitsConfig, OAuthSettings, ProviderAuth, ProviderConfig,
    TokenRequest, Url,
};

/// oauth2's client with the token endpoint set (and the authorize endpoint, for reauthorization).
pub type OAuthClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

pub fn oauth_client(p: &OAuthSettings) -> OAuthClient {
    let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(p.client_id.clone()))
        .set_auth_uri(oauth2::AuthUrl::from_url(p.authorize_url.clone()))
        .set_token_uri(oauth2::TokenUrl::from_url(p.token_url.clone()))
        .set_auth_type(match p.client_auth {
            ClientAuth::Basic => oauth2::AuthType::BasicAuth,
            ClientAuth::Post | ClientAuth::None => oauth2::AuthType::RequestBody,
        });
    match (&p.client_secret, p.client_auth) {
        (Some(secret), ClientAuth::Basic | ClientAuth::Post) => {
            client.set_client_secret(oauth2::ClientSecret::new(secret.expose_secret().to_owned()))
        }
        _ => client,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("request captured")]
struct Captured;

/// The refresh request exactly as oauth2 builds it (grant type, client authentication, form
/// encoding). We send it ourselves: oauth2's typed errors drop what the classifier needs
/// (status, headers, `error_codes`, `error_subtype`, Graph-API error objects).
pub(super) fn refresh_request(
    client: &OAuthClient,
    refresh_token: &str,
) -> Option<oauth2::HttpRequest> {
    let slot = std::sync::Mutex::new(None);
    let capture = |request: oauth2::HttpRequest| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(request);
        }
        std::future::ready(Err::<oauth2::HttpResponse, _>(Captured))
    };
    let token = oauth2::RefreshToken::new(refresh_token.to_owned());
    // Always an error (the capture refuses to send); the request is what we wanted. The
    // capture answers at once, so the future is done at its first poll.
    {
        let exchange = client.exchange_refresh_token(&token);
        let mut sent = std::pin::pin!(exchange.request_async(&capture));
        let _ = sent
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    }
    slot.into_inner().ok().flatten()
}

/// A provider's refresh request as oauth2 builds it, built once with a stand-in for the refresh
/// token: a check only puts its own token in (form-encoded, as oauth2 encodes it). Built by
/// oauth2 for every check, it parsed the token URL and encoded the client's credentials every
/// time. It holds the client's credentials, so it has no `Debug`.
pub struct RefreshTemplate {
    method: oauth2::http::Method,
    uri: oauth2::http::Uri,
    headers: oauth2::http::HeaderMap,
    /// The form before and after the refresh token's value.
    before: Vec<u8>,
    after: Vec<u8>,
}

/// Letters and digits only, so that form encoding leaves it as it is.
const STAND_IN: &str = "credwatchRefreshTokenStandIn7f3a9c";

impl RefreshTemplate {
    /// `None` if oauth2's request does not carry the stand-in exactly once, in its form.
    pub fn new(client: &OAuthClient) -> Option<Self> {
        let (parts, body) = refresh_request(client, STAND_IN)?.into_parts();
        let stand_in = STAND_IN.as_bytes();
        let mut found = body
            .windows(stand_in.len())
            .enumerate()
            .filter(|(_, w)| *w == stand_in);
        let (at, _) = found.next()?;
        if found.next().is_some()
            || parts.uri.to_string().contains(STAND_IN)
            || parts
                .headers
                .values()
                .any(|v| v.as_bytes().windows(stand_in.len()).any(|w| w == stand_in))
        {
            return None;
        }
        let mut headers = parts.headers;
        // The client's credentials, kept for every request: never shown by a `Debug` of one.
        if let Some(v) = headers.get_mut(oauth2::http::header::AUTHORIZATION) {
            v.set_sensitive(true);
        }
        Some(Self {
            method: parts.method,
            uri: parts.uri,
            headers,
            before: body[..at].to_vec(),
            after: body[at + stand_in.len()..].to_vec(),
        })
    }

    /// The request that refreshes with `refresh_token`.
    pub fn request(&self, refresh_token: &SecretString) -> Option<oauth2::HttpRequest> {
        let token = refresh_token.expose_secret().as_bytes();
        let mut body = Vec::with_capacity(self.before.len() + token.len() * 3 + self.after.len());
        body.extend_from_slice(&self.before);
        for piece in oauth2::url::form_urlencoded::byte_serialize(token) {
            body.extend_from_slice(piece.as_bytes());
        }
        body.extend_from_slice(&self.after);
        let mut request = oauth2::http::Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(body)
            .ok()?;
        *request.headers_mut() = self.headers.clone();
        Some(request)
    }
}

/// The authorization-code exchange (with the PKCE verifier) as oauth2 builds it; sent like a
/// refresh, by our client.
pub async fn code_request(
    client: &OAuthClient,
    code: String,
    verifier: &SecretString,
    redirect: &Url,
) -> Option<oauth2::HttpRequest> {
    let slot = std::sync::Mutex::new(None);
    let capture = |request: oauth2::HttpRequest| {
        if let Ok(mut s) = slot.lock() {
            *s = Some(request);
        }
        std::future::ready(Err::<oauth2::HttpResponse, _>(Captured))
    };
    let redirect = oauth2::RedirectUrl::from_url(redirect.clone());
    let _ = client
        .exchange_code(oauth2::AuthorizationCode::new(code))
        .set_pkce_verifier(oauth2::PkceCodeVerifier::new(
            verifier.expose_secret().to_owned(),
        ))
        .set_redirect_uri(std::borrow::Cow::Owned(redirect))
        .request_async(&capture)
        .await;
    slot.into_inner().ok().flatten()
}

/// The token request with the provider's `token_params` and `token_headers`, in its
/// `token_request` format. Parameters oauth2 set (the grant, the token, the client) are never
/// replaced.
fn shape_token_request(request: oauth2::HttpRequest, p: &OAuthSettings) -> oauth2::HttpRequest {
    if p.token_params.is_empty()
        && p.token_headers.is_empty()
        && p.token_request == TokenRequest::Form
    {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    parts.headers.extend(p.token_headers.clone());
    let mut form: Vec<(String, String)> = oauth2::url::form_urlencoded::parse(&body)
        .into_owned()
        .collect();
    for (k, v) in &p.token_params {
        if !form.iter().any(|(have, _)| have == k) {
            form.push((k.clone(), v.clone()));
        }
    }
    let body = match p.token_request {
        TokenRequest::Form => oauth2::url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish()
            .into_bytes(),
        TokenRequest::Json => {
            parts.headers.insert(
                oauth2::http::header::CONTENT_TYPE,
                oauth2::http::HeaderValue::from_static("application/json"),
            );
            let object: serde_json::Map<String, serde_json::Value> = form
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            serde_json::Value::Object(object).to_string().into_bytes()
        }
    };
    parts.headers.remove(oauth2::http::header::CONTENT_LENGTH);
    oauth2::HttpRequest::from_parts(parts, body)
}

#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_bytes: u64,
}

impl HttpClient {
    pub fn new(limits: &LimitsConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(limits.request_timeout)
            .connect_timeout(limits.request_timeout.min(Duration::from_secs(10)))
            // A token endpoint that redirects would take our refresh token with it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("credwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            max_bytes: limits.max_response_bytes,
        })
    }

    /// Sends a token request oauth2 built, shaped as the provider wants it: its extra
    /// parameters and headers added, and as a JSON object instead of a form where it wants JSON.
    /// `request` is for the provider's token endpoint (`oauth_client` sets no other): it goes
    /// to the URL parsed once from the config, not to one parsed again from the request's URI.
    pub async fn send_token(&self, request: oauth2::HttpRequest, p: &OAuthSettings) -> Outcome {
        let (parts, body) = shape_token_request(request, p).into_parts();
        let mut r = reqwest::Request::new(parts.method, p.token_url.clone());
        *r.headers_mut() = parts.headers;
        *r.body_mut() = Some(body.into());
        self.send(r).await
    }

    /// The probe (`url`, a GET unless the provider's is a POST, with its fixed headers) with
    /// the connection's credential where its provider wants it: an access token as a Bearer
    /// (or in the API's own header), an API key in its header or query parameter, or a
    /// password as HTTP Basic (stored as `user:password`; a user name has no colon, RFC 7617).
    pub async fn probe(&self, p: &ProviderConfig, url: &Url, credential: &SecretString) -> Outcome {
        let secret = credential.expose_secret();
        let mut request = if p.probe.post {
            self.client.post(url.clone())
        } else {
            self.client.get(url.clone())
        }
        .header(reqwest::header::ACCEPT, "application/json");
        request = request.headers(p.probe.headers.clone());
        let placed = |request: reqwest::RequestBuilder, placement: &KeyPlacement| match placement {
            KeyPlacement::Header { name, prefix } => {
                request.header(name.as_str(), format!("{prefix}{secret}"))
            }
            KeyPlacement::Query { name } => request.query(&[(name.as_str(), secret)]),
        };
        let request = match &p.auth {
            ProviderAuth::OAuth(o) => placed(request, &o.token_in),
            ProviderAuth::ApiKey(placement) => placed(request, placement),
            ProviderAuth::Basic => {
                let (user, password) = secret.split_once(':').unwrap_or((secret, ""));
                request.basic_auth(user, Some(password))
            }
        };
        let request = request.build();
        match request {
            Ok(r) => self.send(r).await,
            Err(e) => Outcome::Transport(failure(&e)),
        }
    }

    /// RFC 7662: asks the provider whether a refresh token is still active.
    pub async fn introspect(&self, url: &Url, p: &OAuthSettings, token: &SecretString) -> Outcome {
        self.token_form(url, p, token, "refresh_token").await
    }

    /// RFC 7009: revokes a token (`hint` is "refresh_token" or "access_token").
    pub async fn revoke(
        &self,
        url: &Url,
        p: &OAuthSettings,
        token: &SecretString,
        hint: &str,
    ) -> Outcome {
        self.token_form(url, p, token, hint).await
    }

    /// A POST about one token (a form, or JSON where the provider's token requests are JSON),
    /// with the client authenticated as at the token endpoint.
    async fn token_form(
        &self,
        url: &Url,
        p: &OAuthSettings,
        token: &SecretString,
        hint: &str,
    ) -> Outcome {
        let encode = |s: &str| {
            oauth2::url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        };
        let mut form = vec![
            ("token", token.expose_secret().to_owned()),
            ("token_type_hint", hint.to_owned()),
        ];
        let mut request = self.client.post(url.clone());
        request = request.headers(p.token_headers.clone());
        match (p.client_auth, &p.client_secret) {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic, as oauth2 does for refreshes.
            (ClientAuth::Basic, Some(secret)) => {
                request =
                    request.basic_auth(encode(&p.client_id), Some(encode(secret.expose_secret())));
            }
            (ClientAuth::Post, Some(secret)) => {
                form.push(("client_id", p.client_id.clone()));
                form.push(("client_secret", secret.expose_secret().to_owned()));
            }
            _ => form.push(("client_id", p.client_id.clone())),
        }
        let request = match p.token_request {
            TokenRequest::Form => request.form(&form),
            TokenRequest::Json => request.json(&form.into_iter().collect::<BTreeMap<_, _>>()),
        };
        match request.build() {
            Ok(r) => self.send(r).await,
            Err(e) => Outcome::Transport(failure(&e)),
        }
    }

    pub async fn send(&self, request: reqwest::Request) -> Outcome {
        let mut response = match self.client.execute(request).await {
            Ok(r) => r,
            Err(e) => return Outcome::Transport(failure(&e)),
        };
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut out = Response {
            status: response.status().as_u16(),
            retry_after: header(reqwest::header::RETRY_AFTER),
            www_authenticate: header(reqwest::header::WWW_AUTHENTICATE),
            location: header(reqwest::header::LOCATION),
            body: Vec::new(),
        };
        let too_large = || {
            Outcome::Transport(TransportFailure {
                kind: TransportKind::TooLarge,
                message: format!("HTTP {}: body over {} bytes", out.status, self.max_bytes),
            })
        };
        if response
            .content_length()
            .is_some_and(|l| l > self.max_bytes)
        {
            return too_large();
        }
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (out.body.len() + chunk.len()) as u64 > self.max_bytes {
                        return too_large();
                    }
                    out.body.extend_from_slice(&chunk);
                }
                Ok(None) => return Outcome::Response(out),
                Err(e) => return Outcome::Transport(failure(&e)),
            }
        }
    }
}

/// A transport error in words, without the URL (a probe URL may carry a key in its query).
fn failure(e: &reqwest::Error) -> TransportFailure {
    let kind = if e.is_timeout() {
        TransportKind::Timeout
    } else if e.is_connect() {
        TransportKind::Connect
    } else {
        TransportKind::Other
    };
    let mut message = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&s.to_string());
        source = s.source();
    }
    if message.is_empty() {
        message = e.to_string();
    }
    TransportFailure { kind, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(auth: oauth2::AuthType, secret: Option<&str>) -> OAuthClient {
        let url = |s: &str| Url::parse(s).unwrap();
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new("client id&=".into()))
            .set_auth_uri(oauth2::AuthUrl::from_url(url(
                "https://p.example/authorize",
            )))
            .set_token_uri(oauth2::TokenUrl::from_url(url(
                "https://p.example/token?x=1",
            )))
            .set_auth_type(auth);
        match secret {
            Some(s) => client.set_client_secret(oauth2::ClientSecret::new(s.into())),
            None => client,
        }
    }

    /// The request a check sends is oauth2's own, whatever the token and the client's
    /// authentication: only the refresh token differs from the template's.
    #[test]
    fn a_templated_refresh_request_is_the_one_oauth2_builds() {
        let clients = [
            client(oauth2::AuthType::BasicAuth, Some("s3cret +/=&")),
            client(oauth2::AuthType::RequestBody, Some("s3cret +/=&")),
            client(oauth2::AuthType::RequestBody, None),
        ];
        let tokens = [
            "plain",
            "1//0g-with_dots.and~tilde",
            "a+b/c=d&e f%20",
            "ünïcødé✓",
            "credwatchRefreshTokenStandIn7f3a9c",
            "",
        ];
        for client in &clients {
            let template = RefreshTemplate::new(client).expect("a template");
            for token in tokens {
                let ours = template
                    .request(&SecretString::from(token.to_owned()))
                    .unwrap();
                let theirs = refresh_request(client, token).unwrap();
                assert_eq!(ours.method(), theirs.method());
                assert_eq!(ours.uri(), theirs.uri());
                assert_eq!(ours.headers(), theirs.headers());
                assert_eq!(
                    String::from_utf8_lossy(ours.body()),
                    String::from_utf8_lossy(theirs.body()),
                    "{token}"
                );
            }
        }
    }
}
