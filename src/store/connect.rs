//! The store's side of connect links, a role of its own: what the connect pages, the API and
//! `connection invite` use.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::StoreError;
use crate::domain::{ConnectionId, EmailAddress, ProviderId};

/// What a connect link will create, and for whom.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewConnectLink {
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    pub external_id: Option<String>,
    /// Only a grant for this account is accepted, when set.
    pub account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ConnectLink {
    pub invite: NewConnectLink,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// An authorization started from a connect page, taken back by the callback.
#[derive(Debug)]
pub struct ConnectSession {
    pub link_hash: Vec<u8>,
    pub verifier: SecretString,
}

#[async_trait]
pub trait ConnectLinks: Send + Sync {
    async fn add_connect_link(
        &self,
        token_hash: &[u8],
        invite: &NewConnectLink,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn connect_link(&self, token_hash: &[u8]) -> Result<Option<ConnectLink>, StoreError>;
    /// Queues the owner's invitation e-mail; the mailer makes its link when it sends, so the
    /// link is nowhere but in the e-mail.
    async fn queue_invitation(
        &self,
        invite: &NewConnectLink,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records an authorization started from a link; `false` when the link is no longer valid.
    async fn start_connect_session(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Takes an authorization back by its `state`, once.
    async fn take_connect_session(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectSession>, StoreError>;
    /// Uses the link up, once: `false` when it was used (or expired) meanwhile.
    async fn use_connect_link(
        &self,
        link_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Names the connection a used link created.
    async fn connect_link_created(
        &self,
        link_hash: &[u8],
        connection: &ConnectionId,
    ) -> Result<(), StoreError>;
}
