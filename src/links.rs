//! Reauthorize links: `<public_base_url>/reauthorize/<token>`, 256 random bits of which the
//! database keeps only a SHA-256 hash, valid for a lifetime or until the incident ends.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use rand::RngCore;
use sha2::Digest;

use crate::config::Url;
use crate::domain::ConnectionId;
use crate::store::{Store, StoreError};

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    let mut token = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut token);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

/// What the database keeps of a token.
pub fn hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// A fresh link for a connection (and the incident it is about), stored hashed.
pub async fn create(
    store: &dyn Store,
    base_url: &Url,
    lifetime: Duration,
    connection: &ConnectionId,
    incident: Option<i64>,
) -> Result<(String, DateTime<Utc>), StoreError> {
    let token = random_token();
    let now = Utc::now();
    let expires = now + TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::MAX);
    store
        .add_reauth_link(&hash(&token), connection, incident, now, expires)
        .await?;
    // The base always ends in '/', so joining keeps any path prefix (a reverse proxy's).
    let url = base_url
        .join(&format!("reauthorize/{token}"))
        .map(String::from)
        .unwrap_or_else(|_| format!("{base_url}reauthorize/{token}"));
    Ok((url, expires))
}

/// A fresh link for a connection, about its open incident if it is broken (the command line's
/// `connection reauth-link` and the API's reauthorize-link).
pub async fn for_connection(
    store: &dyn Store,
    config: &crate::config::Config,
    connection: &ConnectionId,
) -> Result<(String, DateTime<Utc>), StoreError> {
    store.connection(connection).await?;
    let incident = store.open_incident(connection).await?;
    create(
        store,
        &config.http.public_base_url,
        config.notices.link_lifetime,
        connection,
        incident,
    )
    .await
}

/// A connect link: `<public_base_url>/connect/<token>`, stored hashed, for a new connection.
pub async fn invite(
    store: &dyn Store,
    base_url: &Url,
    lifetime: Duration,
    invite: &crate::store::connect::NewConnectLink,
) -> Result<(String, DateTime<Utc>), StoreError> {
    let token = random_token();
    let now = Utc::now();
    let expires = now + TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::MAX);
    store
        .add_connect_link(&hash(&token), invite, now, expires)
        .await?;
    let url = base_url
        .join(&format!("connect/{token}"))
        .map(String::from)
        .unwrap_or_else(|_| format!("{base_url}connect/{token}"));
    Ok((url, expires))
}
