//! Persistence behind one trait: the rest of the daemon never sees SQL or a backend.
//! The backend is chosen from the database URL; tokens are sealed and opened here and nowhere else.

pub mod connect;
pub mod deliveries;
mod health;
mod queries;
mod sql;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::crypto::{CryptoError, Keyring};
use crate::domain::{
    ConnectionId, ConnectionStatus, EmailAddress, PipelineId, Position, ProviderId,
};
use crate::tokens::TokenSet;

pub use health::{WriteHealth, WritesFailing};
pub use queries::{ConnectionFilter, ConnectionUpdate, Handout, PipelineFilter, PositionUpdate};
pub use sql::SqlStore;
pub use types::*;

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
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the database did not commit a write: {0}")]
    Commit(String),
    #[error("the database schema is at version {found}, this build needs {expected}")]
    SchemaBehind { found: i64, expected: i64 },
    #[error("the database holds a value this version cannot read ({0})")]
    Corrupt(String),
    #[error(
        "pipeline {pipeline} is paused because connection {connections} is broken; it resumes by itself once reauthorized"
    )]
    PausedForBrokenConnection {
        pipeline: PipelineId,
        connections: String,
    },
    /// Our lease ran out and another worker may own the connection now: nothing was written.
    #[error("connection {0} is no longer leased to this worker; its result was not stored")]
    LeaseLost(ConnectionId),
    /// Another connection or pipeline already has this external id.
    #[error("external_id {0:?} is already used")]
    ExternalIdTaken(String),
    /// The stored tokens changed under us: someone else refreshed. Nothing was written.
    #[error("the tokens of connection {0} changed while it was being checked; nothing was stored")]
    TokensChanged(ConnectionId),
}

impl StoreError {
    /// The database itself failed (down, disk full, a commit that did not happen), as opposed
    /// to an answer about what was asked.
    pub fn is_outage(&self) -> bool {
        use sqlx::Error::*;
        match self {
            StoreError::Database(e) => matches!(
                e,
                Database(_)
                    | Io(_)
                    | Tls(_)
                    | Protocol(_)
                    | PoolTimedOut
                    | PoolClosed
                    | WorkerCrashed
            ),
            StoreError::Commit(_) | StoreError::Open { .. } => true,
            _ => false,
        }
    }
}

pub const ALERT_CLIENT_MISCONFIGURED: &str = "client_misconfigured";
/// Connections whose stored tokens cannot be opened were set aside.
pub const ALERT_UNREADABLE_TOKENS: &str = "unreadable_tokens";

#[async_trait]
pub trait Store: deliveries::Deliveries + connect::ConnectLinks + Send + Sync + 'static {
    /// Brings the schema up to date; safe to call on every start.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// The database answers and its schema is the one this build expects.
    async fn ready(&self) -> Result<(), StoreError>;
    /// Set while the writes the daemon's work needs are failing.
    fn writes_failing(&self) -> Option<WritesFailing>;
    /// A small real write, to learn whether writes work again while no other is due.
    async fn probe_writes(&self, now: DateTime<Utc>) -> Result<(), StoreError>;

    async fn add_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<ConnectionId, StoreError>;
    /// Many at once, in one transaction (imports, and the benchmark's seeding).
    async fn add_connections(
        &self,
        batch: Vec<NewConnection>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError>;
    async fn connection(&self, id: &ConnectionId) -> Result<Connection, StoreError>;
    async fn connections(&self) -> Result<Vec<Connection>, StoreError>;
    async fn tokens(&self, id: &ConnectionId) -> Result<StoredTokens, StoreError>;
    /// Connection ids in order, `limit` at a time after `after`: walks every connection without
    /// holding them all.
    async fn connection_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<ConnectionId>, StoreError>;
    /// A connection and its access token, read together (the refresh token stays sealed).
    async fn handout(&self, id: &ConnectionId) -> Result<Handout, StoreError>;
    /// Up to `limit` connections matching `filter`, in id order after `after`.
    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError>;
    async fn update_connection(
        &self,
        id: &ConnectionId,
        update: &ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection, StoreError>;
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
    /// Up to `limit` pipelines matching `filter`, in id order after `after`.
    async fn list_pipelines(
        &self,
        filter: &PipelineFilter,
        after: Option<&PipelineId>,
        limit: u32,
    ) -> Result<Vec<Pipeline>, StoreError>;
    /// Many positions in one transaction; returns the pipelines that do not exist (the others
    /// are recorded).
    async fn set_positions(
        &self,
        updates: &[PositionUpdate],
        now: DateTime<Utc>,
    ) -> Result<Vec<PipelineId>, StoreError>;
    /// The platform pauses a pipeline for its own reasons; we never resume such a pause.
    async fn pause_pipeline(
        &self,
        id: &PipelineId,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The platform lifts its pause. Refused while a connection of the pipeline is broken (the
    /// pause then becomes ours, lifted when the connection heals).
    async fn resume_pipeline(&self, id: &PipelineId, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Pauses and resumes, newest first.
    async fn pipeline_events(
        &self,
        id: &PipelineId,
        limit: u32,
    ) -> Result<Vec<PipelineEvent>, StoreError>;

    async fn counts(&self) -> Result<Counts, StoreError>;
    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, StoreError>;

    /// Claims up to `limit` due connections of one provider that no live lease holds: the claim,
    /// committed before anything calls the provider, is the record of the attempt (the check's
    /// history row is written once, with its result). The claim marks that a refresh may go out
    /// (`refresh_sent_at`), and turns a mark left by a worker that never finished into
    /// `refresh_uncertain_since` and `refresh_interrupted_at`. A connection whose tokens cannot
    /// be opened is set aside instead, with an operator alert, and the rest go on.
    async fn claim_due(&self, q: DueQuery<'_>, lease: &Lease) -> Result<Vec<Claimed>, StoreError>;
    /// Gives the connections set aside another chance (after a restart, the key may be
    /// configured now): they are due at once. Returns how many.
    async fn retry_set_aside(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Claims one connection whether due or not (`credwatch check`).
    async fn claim(
        &self,
        id: &ConnectionId,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError>;
    /// Gives back a claim that was never used: the lease and the claim's mark end.
    async fn release(&self, claimed: &Claimed) -> Result<(), StoreError>;
    /// New tokens that lost their lease (a stalled worker whose connection was taken over):
    /// stored if the tokens we refreshed are still the stored ones, whoever holds the lease,
    /// since the provider now considers ours the live ones. The connection is then due at once.
    async fn rescue_rotation(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError>;
    /// Stores refreshed tokens at once, in one transaction, only if the generation is still the
    /// one we refreshed and we still hold the lease. Returns the new generation.
    async fn save_rotation(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError>;
    /// A healthy connection whose refresh was the whole check and found it healthy: the new
    /// tokens (as `save_rotation`) and the result (as `finish_check`) in one transaction.
    /// `false`, with nothing written, when anything is not as claimed (the lease, the tokens,
    /// the status, the key): store them apart then, which also says why.
    async fn finish_refreshed(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
        result: &CheckResult,
    ) -> Result<bool, StoreError>;
    /// Records the check, applies its transition, and ends the lease, in one transaction.
    async fn finish_check(
        &self,
        claimed: &Claimed,
        result: &CheckResult,
    ) -> Result<Applied, StoreError>;
    /// Moves overdue connections to random times within `window` from `now` when there are more
    /// than `keep` of them, so a restart after downtime does not check them all at once.
    async fn spread_overdue(
        &self,
        now: DateTime<Utc>,
        window: std::time::Duration,
        keep: u32,
    ) -> Result<u64, StoreError>;
    async fn recent_checks(
        &self,
        id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<CheckRecord>, StoreError>;

    /// Opens an alert unless one of that kind is open for the provider; true when it opened one.
    async fn open_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<bool, StoreError>;
    /// After a failed trial check of a held provider: the next one after `base` doubling per
    /// attempt, up to `cap`. Only a due alert moves, so checks already in flight when the alert
    /// opened do not stretch the backoff.
    async fn postpone_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
        base: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<(), StoreError>;
    /// Closes the open alert of that kind; true when there was one.
    async fn close_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    async fn open_provider_alerts(&self) -> Result<Vec<ProviderAlert>, StoreError>;

    /// Queues the reminders that are due for open incidents, each once.
    async fn queue_reminders(
        &self,
        now: DateTime<Utc>,
        reminders: &[std::time::Duration],
    ) -> Result<u64, StoreError>;
    /// Queues one "expiring soon" notice per connection and known refresh-token end within
    /// `horizon`.
    async fn queue_expiring(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<u64, StoreError>;
    /// Claims due notices (and, for an owner with an expired-credentials notice due, the
    /// others of that kind still waiting for them, so they go out as one digest).
    async fn claim_outbox(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// When the next pending notice is due, if any.
    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn outbox_sent(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<(), StoreError>;
    async fn outbox_retry(
        &self,
        ids: &[i64],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn outbox_failed(
        &self,
        ids: &[i64],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn incident(&self, id: i64) -> Result<Incident, StoreError>;
    /// Whether an e-mail about the incident (its notice or a reminder) reached its owner.
    async fn owner_told(&self, incident: i64) -> Result<bool, StoreError>;
    /// The connection's open incident, if it is broken.
    async fn open_incident(&self, connection: &ConnectionId) -> Result<Option<i64>, StoreError>;
    /// Stores a reauthorize link's token hash for an incident.
    async fn add_reauth_link(
        &self,
        token_hash: &[u8],
        connection: &ConnectionId,
        incident: Option<i64>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn reauth_link(&self, token_hash: &[u8]) -> Result<Option<ReauthLink>, StoreError>;
    /// Records an authorization started from a link; refused (`Ok(false)`) when the link is no
    /// longer valid at `now`.
    async fn start_oauth_session(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Takes an authorization back by its `state`, once: a second call, an unknown or an
    /// expired state give `None`.
    async fn take_oauth_session(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthSession>, StoreError>;
    /// The owner authorized again, in one transaction: new tokens, the incident ended, the
    /// connection healthy, its pipelines resumed, the Reconnected notice queued, the link used.
    async fn reauthorize(
        &self,
        connection: &ConnectionId,
        link_hash: &[u8],
        tokens: &TokenSet,
        now: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
    ) -> Result<Reauthorized, StoreError>;
    /// The pipelines that use a connection.
    async fn pipelines_of(&self, connection: &ConnectionId) -> Result<Vec<Pipeline>, StoreError>;

    /// Up to `limit` events after the one at `after` (0: from the start), of `types` (all
    /// when empty), in the order they happened.
    async fn events_after(
        &self,
        after: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<crate::events::Stored>, StoreError>;
    /// Woken after every write this process commits (a long poll's cue to look again).
    fn committed(&self) -> Arc<tokio::sync::Notify>;
    /// Removes events older than `before` that no delivery still waits for.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Removes the history rows of checks that finished before `before`, never a connection's
    /// last check, and at most `limit` rows a call (the rest go at the next). Returns how many.
    async fn prune_history(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError>;

    /// The ids of the keys listed as sealing stored tokens: every key that seals one is listed
    /// before it does (`list_keys` at open), and stays listed until found unused.
    async fn key_ids(&self) -> Result<Vec<String>, StoreError>;
    /// The ids of the keys the stored tokens need, read from every connection.
    async fn keys_in_use(&self) -> Result<Vec<String>, StoreError>;
    /// Lists `current`, the key this process seals with, and forgets the keys of `forget` that
    /// no stored token needs.
    async fn list_keys(&self, current: &str, forget: &[String]) -> Result<(), StoreError>;

    /// Answers what was already asked of it, then stops the store's own writers and readers
    /// (waiting for each) and closes its database connections. Called last, at shutdown.
    async fn close(&self);
}

/// Opens the store the URL names and brings its schema up to date. Refuses a keyring that cannot
/// open every stored token, so a wrong key file is found at start, not at the first refresh.
pub async fn open(
    config: &DatabaseConfig,
    keyring: Arc<Keyring>,
) -> Result<Arc<dyn Store>, StoreError> {
    let store: Arc<dyn Store> = match &config.url {
        DatabaseUrl::Sqlite(path) => {
            Arc::new(SqlStore::open_sqlite(path, config.max_connections, keyring.clone()).await?)
        }
        DatabaseUrl::Postgres(url) => {
            Arc::new(SqlStore::open_postgres(url, config.max_connections, keyring.clone()).await?)
        }
    };
    store.migrate().await?;
    let listed = store.key_ids().await?;
    let (known, unknown): (Vec<String>, Vec<String>) =
        listed.into_iter().partition(|id| keyring.knows(id));
    if !unknown.is_empty() {
        // A listed key may be one no token needs any more: only the tokens can tell.
        for id in store.keys_in_use().await? {
            if !keyring.knows(&id) {
                let current = keyring.current_id().to_string();
                return Err(CryptoError::UnknownKey {
                    stored: id,
                    current,
                }
                .into());
            }
        }
    }
    let current = keyring.current_id().as_str();
    // Written only when something changes: every command opens the store, most only to read.
    if !unknown.is_empty() || !known.iter().any(|id| id == current) {
        store.list_keys(current, &unknown).await?;
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
