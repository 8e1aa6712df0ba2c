//! Persistence behind one trait: the rest of the daemon never sees SQL or a backend.
//! The backend is chosen from the database URL; tokens are sealed and opened here and nowhere else.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::crypto::{CryptoError, Keyring};
use crate::domain::{
    ConnectionId, ConnectionStatus, EmailAddress, PausedBy, PipelineId, PipelineState, Position,
    ProviderId,
};
use crate::tokens::TokenSet;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no connection with id {0}")]
    ConnectionNotFound(ConnectionId),
    #[error("no pipeline with id {0}")]
    PipelineNotFound(PipelineId),
    #[error("connection {id} is used by pipeline(s) {pipelines}; remove or change those first")]
    ConnectionInUse { id: ConnectionId, pipelines: String },
    #[error("cannot open the database at {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("PostgreSQL is not supported by this build yet; use a sqlite:// URL")]
    PostgresUnsupported,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the database holds a value this version cannot read ({0})")]
    Corrupt(String),
}

/// What `connection add` stores.
#[derive(Debug)]
pub struct NewConnection {
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    pub account: Option<String>,
    pub tokens: TokenSet,
}

/// A connection as the rest of the daemon sees it: everything but the tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    pub account: Option<String>,
    pub scopes: Vec<String>,
    pub status: ConnectionStatus,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub has_refresh_token: bool,
    pub token_generation: i64,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub next_check_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A connection's tokens, opened; only the checker and the revocation path ask for these.
#[derive(Debug)]
pub struct StoredTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub generation: i64,
}

#[derive(Debug)]
pub struct NewPipeline {
    pub name: String,
    pub connections: Vec<ConnectionId>,
    pub position: Option<Position>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub id: PipelineId,
    pub name: String,
    pub state: PipelineState,
    pub position: Option<Position>,
    pub position_updated_at: Option<DateTime<Utc>>,
    pub paused_at_position: Option<Position>,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_by: Option<PausedBy>,
    pub pause_reason: Option<String>,
    pub connections: Vec<ConnectionId>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub connections: u64,
    pub healthy: u64,
    pub degraded: u64,
    pub broken: u64,
    pub pipelines: u64,
    pub paused: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Brings the schema up to date; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError>;

    async fn add_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<ConnectionId, StoreError>;
    async fn connection(&self, id: &ConnectionId) -> Result<Connection, StoreError>;
    async fn connections(&self) -> Result<Vec<Connection>, StoreError>;
    async fn tokens(&self, id: &ConnectionId) -> Result<StoredTokens, StoreError>;
    /// Refused while pipelines use the connection.
    async fn remove_connection(&self, id: &ConnectionId) -> Result<(), StoreError>;

    async fn add_pipeline(
        &self,
        new: NewPipeline,
        now: DateTime<Utc>,
    ) -> Result<PipelineId, StoreError>;
    async fn pipeline(&self, id: &PipelineId) -> Result<Pipeline, StoreError>;
    async fn pipelines(&self) -> Result<Vec<Pipeline>, StoreError>;
    /// Records how far a pipeline got. A paused pipeline keeps its pause (and `paused_at_position`).
    async fn set_position(
        &self,
        id: &PipelineId,
        position: &Position,
        now: DateTime<Utc>,
    ) -> Result<Pipeline, StoreError>;
    async fn remove_pipeline(&self, id: &PipelineId) -> Result<(), StoreError>;

    async fn counts(&self) -> Result<Counts, StoreError>;

    /// The ids of the keys that sealed the stored tokens.
    async fn key_ids(&self) -> Result<Vec<String>, StoreError>;
}

/// Opens the store the URL names and brings its schema up to date. Refuses a keyring that cannot
/// open every stored token, so a wrong key file is found at start, not at the first refresh.
pub async fn open(
    config: &DatabaseConfig,
    keyring: Arc<Keyring>,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match &config.url {
        DatabaseUrl::Sqlite(path) => {
            Arc::new(SqliteStore::open(path, config.max_connections, keyring.clone()).await?)
        }
        DatabaseUrl::Postgres(_) => return Err(StoreError::PostgresUnsupported),
    };
    store.migrate().await?;
    for id in store.key_ids().await? {
        if !keyring.knows(&id) {
            let current = keyring.current_id().to_string();
            return Err(CryptoError::UnknownKey {
                stored: id,
                current,
            }
            .into());
        }
    }
    Ok(store)
}

pub(crate) fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

/// The authenticated context of a sealed token: its row and column, so blobs cannot be swapped.
pub(crate) fn token_context(id: &ConnectionId, column: &str) -> String {
    format!("{id}/{column}")
}
