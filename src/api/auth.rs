//! Bearer API keys: only their SHA-256 is configured, the presented key is hashed and compared
//! in constant time with every configured hash, and the caller is known by the key's name from
//! then on (in the log, in metrics). The key itself is never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::config::{ApiKeyConfig, api_key_sha256};

/// What every key starts with, so a leaked one is recognisable (secret scanners, logs).
const KEY_PREFIX: &str = "cwk_";

/// A new key: the prefix and 256 random bits, URL-safe.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The name of the key a request came with.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<str>);

/// The keys of the running config.
#[derive(Debug, Default)]
pub struct Keys(Vec<(Arc<str>, [u8; 32])>);

impl Keys {
    pub fn new(keys: &[ApiKeyConfig]) -> Self {
        Self(
            keys.iter()
                .map(|k| (Arc::from(k.name.as_str()), k.sha256))
                .collect(),
        )
    }

    /// The name of the key, if it is one of ours. Every configured hash is compared, whatever
    /// matched, so the time taken says nothing about which key was close.
    pub(super) fn find(&self, presented: &str) -> Option<Arc<str>> {
        let hash = api_key_sha256(presented);
        let mut found = None;
        for (name, sha256) in &self.0 {
            if bool::from(hash.ct_eq(sha256)) {
                found = Some(name.clone());
            }
        }
        found
    }
}

/// Lets a request in only with a configured key, and logs it with the key's name.
pub async fn require_key(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        });
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let Some(caller) = presented.and_then(|k| state.current().caller(k)) else {
        tracing::warn!(target: "credwatch::api::access", %method, path, status = 401,
            "API request refused: {}", if presented.is_some() { "unknown key" } else { "no key" });
        return ApiError::Unauthorized.into_response();
    };
    request.extensions_mut().insert(Caller(caller.clone()));
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    state.metrics.api_request(&caller, status);
    tracing::info!(target: "credwatch::api::access", key = %caller, %method, path, status,
        ms = format!("{ms:.1}"), "API request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_found_by_its_hash_and_others_are_not() {
        let key = generate_key();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43);
        let keys = Keys::new(&[
            ApiKeyConfig {
                name: "platform".into(),
                sha256: api_key_sha256(&key),
            },
            ApiKeyConfig {
                name: "other".into(),
                sha256: api_key_sha256(&generate_key()),
            },
        ]);
        assert_eq!(keys.find(&key).as_deref(), Some("platform"));
        assert_eq!(keys.find(&generate_key()), None);
        assert_eq!(keys.find(""), None);
        assert_eq!(keys.find(&key[..key.len() - 1]), None);
    }
}
