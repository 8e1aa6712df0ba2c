//! OAuth token responses (RFC 6749 §5.1) as they arrive from a provider or an operator's file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A malformed token response. Never carries the offending value: it might be a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token response: {0}")]
pub struct TokenParseError(String);

/// Tokens and what we know of their lifetimes; secrets never print.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    /// When the access token stops working, if the provider said.
    pub expires_at: Option<DateTime<Utc>>,
    /// Absolute end of the refresh token that refreshing cannot extend (LinkedIn, Intuit ...).
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// The `sub` claim of an id_token, and its `email` only when `email_verified` is true, read
    /// but not verified: good enough to name the account, never to authenticate anyone.
    pub id_token_subject: Option<String>,
    pub id_token_email: Option<String>,
    /// Where this grant's API lives, when the token response says (Salesforce's
    /// `instance_url`, Pipedrive's `api_domain`): an https origin.
    pub instance_url: Option<String>,
}

impl TokenSet {
    /// A new grant of a provider that issues no refresh tokens (Meta's long-lived tokens) ends
    /// when its access token does: that is the date its owner must reconnect by, and what
    /// they are warned of. Only for a grant as it is first stored, and only for such a
    /// provider: a refresh answer without a refresh token keeps the one the connection has.
    pub fn new_grant(mut self, issues_refresh_tokens: bool) -> Self {
        if !issues_refresh_tokens
            && self.refresh_token.is_none()
            && self.refresh_expires_at.is_none()
        {
            self.refresh_expires_at = self.expires_at;
        }
        self
    }

    /// A key or a password as the store seals it: the secret in `access_token`, nothing to
    /// refresh, no lifetime.
    pub fn secret_only(access_token: SecretString) -> Self {
        Self {
            access_token,
            refresh_token: None,
            expires_at: None,
            refresh_expires_at: None,
            scopes: Vec::new(),
            id_token_subject: None,
            id_token_email: None,
            instance_url: None,
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    access_token: SecretString,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default, deserialize_with = "seconds")]
    expires_in: Option<i64>,
    /// Not in the RFC, but what many tools that store tokens write down.
    #[serde(default, deserialize_with = "seconds")]
    expires_at: Option<i64>,
    #[serde(default, deserialize_with = "seconds")]
    refresh_token_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "seconds")]
    x_refresh_token_expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    id_token: Option<SecretString>,
    #[serde(default)]
    instance_url: Option<serde_json::Value>,
    #[serde(default)]
    api_domain: Option<serde_json::Value>,
}

/// A per-grant API origin as a provider names it: https only (plain http only on loopback, for
/// tests), no credentials, nothing but scheme, host and port kept.
pub fn instance_origin(given: &str) -> Option<String> {
    let url = reqwest::Url::parse(given).ok()?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost");
    let allowed = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    (allowed && url.username().is_empty() && url.password().is_none() && url.host().is_some())
        .then(|| url.origin().ascii_serialization())
}

/// Some providers send numbers as strings ("3600"); both mean the same.
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::Int(n)) => Ok(Some(n)),
        Some(Num::Float(f)) if f.is_finite() => Ok(Some(f as i64)),
        Some(Num::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("not a number of seconds")),
        Some(Num::Float(_)) => Err(serde::de::Error::custom("not a number of seconds")),
    }
}

impl TokenSet {
    /// Parses a token response received at `now`.
    pub fn from_json(bytes: &[u8], now: DateTime<Utc>) -> Result<Self, TokenParseError> {
        // The path to a bad field is worked out only for an answer that has one: tracking it
        // costs every answer.
        let parsed = serde_json::from_slice::<Wire>(bytes).or_else(|_| {
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
        });
        let wire: Wire = parsed.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "not valid JSON".to_owned()
                }
                serde_json::error::Category::Io => "could not be read".to_owned(),
                serde_json::error::Category::Data if path == "." => {
                    "expected a JSON object with at least access_token".to_owned()
                }
                serde_json::error::Category::Data => {
                    format!("field `{path}` is missing or has the wrong type")
                }
            };
            TokenParseError(format!(
                "{what} (line {}, column {})",
                inner.line(),
                inner.column()
            ))
        })?;
        if wire.access_token.expose_secret().is_empty() {
            return Err(TokenParseError("access_token is empty".into()));
        }
        let after = |secs: Option<i64>| {
            secs.filter(|s| *s > 0)
                .map(|s| now + TimeDelta::seconds(s.min(i64::from(i32::MAX))))
        };
        let expires_at = after(wire.expires_in)
            .or_else(|| wire.expires_at.and_then(|t| DateTime::from_timestamp(t, 0)));
        let (sub, email) = wire
            .id_token
            .as_ref()
            .map(|t| id_token_claims(t.expose_secret()))
            .unwrap_or_default();
        Ok(Self {
            access_token: wire.access_token,
            refresh_token: wire.refresh_token.filter(|t| !t.expose_secret().is_empty()),
            expires_at,
            refresh_expires_at: after(
                wire.refresh_token_expires_in
                    .or(wire.x_refresh_token_expires_in),
            ),
            scopes: wire
                .scope
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            id_token_subject: sub,
            id_token_email: email,
            instance_url: [wire.instance_url, wire.api_domain]
                .into_iter()
                .flatten()
                .find_map(|v| v.as_str().and_then(instance_origin)),
        })
    }
}

fn id_token_claims(jwt: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Claims {
        sub: Option<String>,
        email: Option<String>,
        #[serde(default)]
        email_verified: Option<serde_json::Value>,
    }
    let claims = jwt
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok())
        .and_then(|json| serde_json::from_slice::<Claims>(&json).ok());
    let Some(c) = claims else {
        return (None, None);
    };
    // An address nobody proved to own names nobody; some providers send the flag as text.
    let verified = matches!(c.email_verified, Some(serde_json::Value::Bool(true)))
        || matches!(&c.email_verified, Some(serde_json::Value::String(s)) if s == "true");
    let usable = |v: Option<String>| {
        v.filter(|v| !v.is_empty() && v.len() <= 256 && crate::domain::is_plain_text(v))
    };
    (usable(c.sub), usable(c.email.filter(|_| verified)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_new_grant_without_a_refresh_token_ends_with_its_access_token() {
        let long_lived =
            TokenSet::from_json(br#"{"access_token":"a","expires_in":5184000}"#, now())
                .unwrap()
                .new_grant(false);
        assert_eq!(long_lived.refresh_expires_at, long_lived.expires_at);
        assert!(long_lived.refresh_expires_at.is_some());
        let refreshable = TokenSet::from_json(
            br#"{"access_token":"a","refresh_token":"r","expires_in":60}"#,
            now(),
        )
        .unwrap()
        .new_grant(false);
        assert_eq!(refreshable.refresh_expires_at, None);
        let unexpected = TokenSet::from_json(br#"{"access_token":"a","expires_in":60}"#, now())
            .unwrap()
            .new_grant(true);
        assert_eq!(
            unexpected.refresh_expires_at, None,
            "only where none are issued"
        );
    }

    #[test]
    fn a_grants_own_api_origin_is_kept_when_it_is_https_and_nothing_else() {
        let at = |body: &str| {
            TokenSet::from_json(body.as_bytes(), now())
                .unwrap()
                .instance_url
        };
        assert_eq!(
            at(r#"{"access_token":"a","instance_url":"https://acme.my.salesforce.com/x?y"}"#),
            Some("https://acme.my.salesforce.com".into())
        );
        assert_eq!(
            at(r#"{"access_token":"a","api_domain":"https://acme.pipedrive.com"}"#),
            Some("https://acme.pipedrive.com".into())
        );
        for refused in [
            r#"{"access_token":"a","instance_url":"http://acme.example"}"#,
            r#"{"access_token":"a","instance_url":"https://u:p@acme.example"}"#,
            r#"{"access_token":"a","instance_url":"javascript:alert(1)"}"#,
            r#"{"access_token":"a","instance_url":42}"#,
        ] {
            assert_eq!(at(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_full_response_parses() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"user-1","email":"ada@example.com","email_verified":true}"#);
        let json = format!(
            r#"{{"access_token":"at","refresh_token":"rt","expires_in":3600,"scope":"openid email","token_type":"Bearer","id_token":"h.{payload}.s","refresh_token_expires_in":"31536000"}}"#
        );
        let t = TokenSet::from_json(json.as_bytes(), now()).unwrap();
        assert_eq!(t.access_token.expose_secret(), "at");
        assert_eq!(t.refresh_token.as_ref().unwrap().expose_secret(), "rt");
        assert_eq!(t.expires_at, Some(now() + TimeDelta::seconds(3600)));
        assert_eq!(t.refresh_expires_at, Some(now() + TimeDelta::days(365)));
        assert_eq!(t.scopes, ["openid", "email"]);
        assert_eq!(t.id_token_subject.as_deref(), Some("user-1"));
        assert_eq!(t.id_token_email.as_deref(), Some("ada@example.com"));
    }

    #[test]
    fn an_email_counts_only_when_verified() {
        let with = |claims: &str| {
            let payload = URL_SAFE_NO_PAD.encode(claims);
            let json = format!(r#"{{"access_token":"at","id_token":"h.{payload}.s"}}"#);
            TokenSet::from_json(json.as_bytes(), now())
                .unwrap()
                .id_token_email
        };
        assert_eq!(with(r#"{"email":"a@example.com"}"#), None);
        assert_eq!(
            with(r#"{"email":"a@example.com","email_verified":false}"#),
            None
        );
        assert_eq!(
            with(r#"{"email":"a@example.com","email_verified":"true"}"#).as_deref(),
            Some("a@example.com")
        );
    }

    #[test]
    fn a_long_lived_token_without_refresh_token_parses() {
        let t =
            TokenSet::from_json(br#"{"access_token":"EAAB","expires_in":5183944}"#, now()).unwrap();
        assert!(t.refresh_token.is_none());
        assert!(t.expires_at.is_some());
    }

    #[test]
    fn malformed_responses_are_errors_that_do_not_repeat_the_input() {
        let cases: &[&[u8]] = &[
            b"",
            b"{",
            b"[]",
            b"<html>oops</html>",
            br#"{"refresh_token":"rt-secret-1"}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":42}"#,
            br#"{"access_token":"at","expires_in":"at-secret-2"}"#,
        ];
        for case in cases {
            let err = TokenSet::from_json(case, now()).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
        let err = TokenSet::from_json(br#"{"access_token":"at","expires_in":"soon"}"#, now())
            .unwrap_err();
        assert!(err.to_string().contains("expires_in"), "{err}");
    }

    #[test]
    fn debug_output_redacts_tokens() {
        let t = TokenSet::from_json(
            br#"{"access_token":"at-secret","refresh_token":"rt-secret"}"#,
            now(),
        )
        .unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
