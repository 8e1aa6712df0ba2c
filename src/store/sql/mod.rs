//! One implementation of the store for both backends, through sqlx's Any driver: SQLite (the
//! embedded default, one file in WAL mode, one daemon) and PostgreSQL (several replicas). The
//! SQL is written once; the few places the dialects differ are `Backend`'s.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use super::*;

mod actions;
mod batch;
mod checks;
mod outbox;
mod reauth;
mod rows;

use rows::*;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        }
    }

    /// SQLite: take the write lock up front; a deferred transaction that upgrades later can fail
    /// with SQLITE_BUSY without waiting, whatever the busy timeout.
    fn begin(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Rows claimed by one replica are skipped by the others' claims, not waited for.
    pub(super) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// A row read in a transaction to be written back: locked on PostgreSQL; SQLite's write
    /// transaction already excludes every other writer.
    pub(super) fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// A random whole number in [0, `param`).
    pub(super) fn random_below(self, param: &str) -> String {
        match self {
            Backend::Sqlite => format!("abs(random() % {param})"),
            Backend::Postgres => format!("CAST(floor(random() * {param}) AS BIGINT)"),
        }
    }
}

const CONNECTION_COLUMNS: &str = "id, provider, name, owner_email, account, scopes, status, reason, status_since, \
     CASE WHEN refresh_token IS NULL THEN 0 ELSE 1 END AS has_refresh_token, token_generation, access_expires_at, refresh_expires_at, \
     consecutive_failures, refresh_uncertain_since, last_check_at, next_check_at, created_at";
const PIPELINE_COLUMNS: &str = "id, name, state, position, position_updated_at, paused_at_position, paused_at, \
     paused_by, pause_reason, created_at";

pub struct SqlStore {
    pool: AnyPool,
    keyring: Arc<Keyring>,
    backend: Backend,
    /// SQLite has one writer at a time; PostgreSQL locks rows.
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite's group commit (see `batch`).
    batch: Option<tokio::sync::mpsc::Sender<batch::Queued>>,
}

/// A write transaction, holding this process's turn to write while it lasts.
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl SqlStore {
    pub async fn open_sqlite(
        path: &Path,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        }
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", url_path(&absolute(path)?));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // A committed token rotation must survive a power cut: the old refresh
                    // token is dead. WAL lets readers run beside the one writer.
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let turns = Arc::new(tokio::sync::Mutex::new(()));
        let (queue, queued) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(batch::writer(pool.clone(), turns.clone(), queued));
        Ok(Self {
            pool,
            keyring,
            backend: Backend::Sqlite,
            writers: Some(turns),
            batch: Some(queue),
        })
    }

    pub async fn open_postgres(
        url: &SecretString,
        max_connections: u32,
        keyring: Arc<Keyring>,
    ) -> Result<Self, StoreError> {
        use secrecy::ExposeSecret;
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .connect(url.expose_secret())
            .await?;
        Ok(Self {
            pool,
            keyring,
            backend: Backend::Postgres,
            writers: None,
            batch: None,
        })
    }

    /// A write transaction. On SQLite, writers take turns in a fair queue here rather than in
    /// SQLite's busy handler, which sleeps and retries: under load that is most of the time.
    async fn write(&self) -> Result<WriteTx, StoreError> {
        let turn = match &self.writers {
            Some(queue) => Some(queue.clone().lock_owned().await),
            None => None,
        };
        Ok(WriteTx {
            tx: self.pool.begin_with(self.backend.begin()).await?,
            _turn: turn,
        })
    }

    async fn pipeline_connections(&self, id: &PipelineId) -> Result<Vec<ConnectionId>, StoreError> {
        let rows = sqlx::query("SELECT connection_id FROM pipeline_connections WHERE pipeline_id = $1 ORDER BY connection_id")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse(r.try_get::<String, _>(0)?))
            .collect()
    }
}

/// The database file's absolute path without `..`: a URL would resolve those against its host.
fn absolute(path: &Path) -> Result<std::path::PathBuf, StoreError> {
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let dir = dir.canonicalize().map_err(|source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    })
}

/// A file path as the path of a `sqlite://` URL (the few characters a URL would misread, escaped).
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.display().to_string().chars() {
        match c {
            '%' | '?' | '#' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

impl SqlStore {
    /// Opens the sealed tokens of a row that has key_id, access_token, refresh_token and token_generation.
    fn tokens_from_row(&self, id: &ConnectionId, row: &AnyRow) -> Result<StoredTokens, StoreError> {
        let key_id: String = row.try_get("key_id")?;
        let access: Vec<u8> = row.try_get("access_token")?;
        let refresh: Option<Vec<u8>> = row.try_get("refresh_token")?;
        Ok(StoredTokens {
            access_token: self.keyring.open(
                &key_id,
                &access,
                &token_context(id, "access_token"),
            )?,
            refresh_token: refresh
                .map(|blob| {
                    self.keyring
                        .open(&key_id, &blob, &token_context(id, "refresh_token"))
                })
                .transpose()?,
            generation: row.try_get("token_generation")?,
        })
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        let expected = self
            .backend
            .migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        match found.unwrap_or(0) {
            f if f >= expected => Ok(()),
            found => Err(StoreError::SchemaBehind { found, expected }),
        }
    }

    async fn add_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<ConnectionId, StoreError> {
        let mut ids = self.add_connections(vec![new], now).await?;
        ids.pop()
            .ok_or_else(|| StoreError::Corrupt("no connection was added".into()))
    }

    async fn add_connections(
        &self,
        batch: Vec<NewConnection>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let now = to_ms(now);
        let mut ids = Vec::with_capacity(batch.len());
        let mut tx = self.write().await?;
        for new in batch {
            let id = ConnectionId::generate();
            let access = self.keyring.seal(
                &new.tokens.access_token,
                &token_context(&id, "access_token"),
            )?;
            let refresh = new
                .tokens
                .refresh_token
                .as_ref()
                .map(|t| self.keyring.seal(t, &token_context(&id, "refresh_token")))
                .transpose()?;
            sqlx::query(
                "INSERT INTO connections (id, provider, name, owner_email, account, scopes, key_id, access_token, \
                 refresh_token, access_expires_at, refresh_expires_at, tokens_updated_at, status, status_since, \
                 next_check_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'healthy', $12, $12, $12, $12)",
            )
            .bind(id.as_str())
            .bind(new.provider.as_str())
            .bind(&new.name)
            .bind(new.owner.as_str())
            .bind(&new.account)
            .bind(new.tokens.scopes.join(" "))
            .bind(access.key_id.as_str())
            .bind(&access.blob)
            .bind(refresh.as_ref().map(|s| &s.blob))
            .bind(new.tokens.expires_at.map(to_ms))
            .bind(new.tokens.refresh_expires_at.map(to_ms))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        connection_from_row(&row)
    }

    async fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn connection_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM connections WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.map_or("", ConnectionId::as_str))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        ids.into_iter().map(parse).collect()
    }

    async fn tokens(&self, id: &ConnectionId) -> Result<StoredTokens, StoreError> {
        let row = sqlx::query("SELECT key_id, access_token, refresh_token, token_generation FROM connections WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        self.tokens_from_row(id, &row)
    }

    async fn remove_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let users: Vec<String> = sqlx::query_scalar("SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $1 ORDER BY pipeline_id")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        if !users.is_empty() {
            return Err(StoreError::ConnectionInUse {
                id: id.clone(),
                pipelines: users.join(", "),
            });
        }
        let removed = sqlx::query("DELETE FROM connections WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::ConnectionNotFound(id.clone()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_pipeline(
        &self,
        new: NewPipeline,
        now: DateTime<Utc>,
    ) -> Result<PipelineId, StoreError> {
        let id = PipelineId::generate();
        let now = to_ms(now);
        let mut connections = new.connections;
        connections.sort();
        connections.dedup();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO pipelines (id, name, state, position, position_updated_at, created_at, updated_at) \
             VALUES ($1, $2, 'running', $3, $4, $5, $5)",
        )
        .bind(id.as_str())
        .bind(&new.name)
        .bind(new.position.as_ref().map(Position::as_str))
        .bind(new.position.as_ref().map(|_| now))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for c in &connections {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE id = $1")
                .bind(c.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::ConnectionNotFound(c.clone()));
            }
            sqlx::query(
                "INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)",
            )
            .bind(id.as_str())
            .bind(c.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn pipeline(&self, id: &PipelineId) -> Result<Pipeline, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::PipelineNotFound(id.clone()))?;
        pipeline_from_row(&row, self.pipeline_connections(id).await?)
    }

    async fn pipelines(&self) -> Result<Vec<Pipeline>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let links = sqlx::query("SELECT pipeline_id, connection_id FROM pipeline_connections ORDER BY pipeline_id, connection_id")
            .fetch_all(&self.pool)
            .await?;
        let mut by_pipeline: std::collections::HashMap<String, Vec<ConnectionId>> =
            std::collections::HashMap::new();
        for link in &links {
            by_pipeline
                .entry(link.try_get("pipeline_id")?)
                .or_default()
                .push(parse(link.try_get("connection_id")?)?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                pipeline_from_row(r, by_pipeline.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn set_position(
        &self,
        id: &PipelineId,
        position: &Position,
        now: DateTime<Utc>,
    ) -> Result<Pipeline, StoreError> {
        let updated = sqlx::query("UPDATE pipelines SET position = $1, position_updated_at = $2, updated_at = $2 WHERE id = $3")
            .bind(position.as_str())
            .bind(to_ms(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::PipelineNotFound(id.clone()));
        }
        self.pipeline(id).await
    }

    async fn remove_pipeline(&self, id: &PipelineId) -> Result<(), StoreError> {
        let removed = sqlx::query("DELETE FROM pipelines WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::PipelineNotFound(id.clone()));
        }
        Ok(())
    }

    async fn pause_pipeline(
        &self,
        id: &PipelineId,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.pause_pipeline_impl(id, reason, now).await
    }

    async fn resume_pipeline(&self, id: &PipelineId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.resume_pipeline_impl(id, now).await
    }

    async fn pipeline_events(
        &self,
        id: &PipelineId,
        limit: u32,
    ) -> Result<Vec<PipelineEvent>, StoreError> {
        self.pipeline_events_impl(id, limit).await
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, status, reason, COUNT(*) AS n FROM connections \
             GROUP BY provider, status, reason ORDER BY provider, status, reason",
        )
        .fetch_all(&self.pool)
        .await?;
        let connections = rows
            .iter()
            .map(|r| {
                Ok(ConnectionCount {
                    provider: r.try_get("provider")?,
                    status: r.try_get("status")?,
                    reason: r.try_get("reason")?,
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (pending, failed): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 END), \
                    COUNT(CASE WHEN failed_at IS NOT NULL THEN 1 END) FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MetricsSnapshot {
            connections,
            outbox_pending: pending,
            outbox_failed: failed,
        })
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM connections) AS connections, \
               (SELECT COUNT(*) FROM connections WHERE status = 'healthy') AS healthy, \
               (SELECT COUNT(*) FROM connections WHERE status = 'degraded') AS degraded, \
               (SELECT COUNT(*) FROM connections WHERE status = 'broken') AS broken, \
               (SELECT COUNT(*) FROM pipelines) AS pipelines, \
               (SELECT COUNT(*) FROM pipelines WHERE state = 'paused') AS paused",
        )
        .fetch_one(&self.pool)
        .await?;
        let n = |col: &str| -> Result<u64, StoreError> {
            Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
        };
        Ok(Counts {
            connections: n("connections")?,
            healthy: n("healthy")?,
            degraded: n("degraded")?,
            broken: n("broken")?,
            pipelines: n("pipelines")?,
            paused: n("paused")?,
        })
    }

    async fn claim_due(&self, q: DueQuery<'_>, lease: &Lease) -> Result<Vec<Claimed>, StoreError> {
        self.claim_due_impl(q, lease).await
    }

    async fn claim(
        &self,
        id: &ConnectionId,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        self.claim_impl(id, lease, now).await
    }

    async fn release(&self, claimed: &Claimed) -> Result<(), StoreError> {
        self.release_impl(claimed).await
    }

    async fn save_rotation(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError> {
        self.save_rotation_impl(claimed, rotation).await
    }

    async fn finish_check(
        &self,
        claimed: &Claimed,
        result: &CheckResult,
    ) -> Result<Applied, StoreError> {
        self.finish_check_impl(claimed, result).await
    }

    async fn spread_overdue(
        &self,
        now: DateTime<Utc>,
        window: std::time::Duration,
        keep: u32,
    ) -> Result<u64, StoreError> {
        self.spread_overdue_impl(now, window, keep).await
    }

    async fn recent_checks(
        &self,
        id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<CheckRecord>, StoreError> {
        self.recent_checks_impl(id, limit).await
    }

    async fn open_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        self.open_provider_alert_impl(provider, kind, detail, now, next_attempt_at, operator)
            .await
    }

    async fn queue_reminders(
        &self,
        now: DateTime<Utc>,
        reminders: &[std::time::Duration],
    ) -> Result<u64, StoreError> {
        self.queue_reminders_impl(now, reminders).await
    }

    async fn queue_expiring(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<u64, StoreError> {
        self.queue_expiring_impl(now, horizon).await
    }

    async fn claim_outbox(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.claim_outbox_impl(lease, now, limit).await
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.next_outbox_due_impl().await
    }

    async fn outbox_sent(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.outbox_sent_impl(ids, now, note).await
    }

    async fn outbox_retry(
        &self,
        ids: &[i64],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_retry_impl(ids, error, next_attempt_at).await
    }

    async fn outbox_failed(
        &self,
        ids: &[i64],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_failed_impl(ids, error, now).await
    }

    async fn open_incident(&self, connection: &ConnectionId) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE connection_id = $1 AND closed_at IS NULL",
        )
        .bind(connection.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn incident(&self, id: i64) -> Result<Incident, StoreError> {
        self.incident_impl(id).await
    }

    async fn add_reauth_link(
        &self,
        token_hash: &[u8],
        connection: &ConnectionId,
        incident: Option<i64>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_reauth_link_impl(token_hash, connection, incident, now, expires_at)
            .await
    }

    async fn reauth_link(&self, token_hash: &[u8]) -> Result<Option<ReauthLink>, StoreError> {
        self.reauth_link_impl(token_hash).await
    }

    async fn start_oauth_session(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.start_oauth_session_impl(link_hash, state_hash, verifier, now, expires_at)
            .await
    }

    async fn take_oauth_session(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthSession>, StoreError> {
        self.take_oauth_session_impl(state_hash, now).await
    }

    async fn reauthorize(
        &self,
        connection: &ConnectionId,
        link_hash: &[u8],
        tokens: &TokenSet,
        now: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
    ) -> Result<Reauthorized, StoreError> {
        self.reauthorize_impl(connection, link_hash, tokens, now, next_check_at)
            .await
    }

    async fn pipelines_of(&self, connection: &ConnectionId) -> Result<Vec<Pipeline>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $1 ORDER BY pipeline_id",
        )
        .bind(connection.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.pipeline(&parse(id)?).await?);
        }
        Ok(out)
    }

    async fn postpone_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
        base: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.postpone_provider_alert_impl(provider, kind, now, base, cap)
            .await
    }

    async fn close_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.close_provider_alert_impl(provider, kind, now).await
    }

    async fn open_provider_alerts(&self) -> Result<Vec<ProviderAlert>, StoreError> {
        self.open_provider_alerts_impl().await
    }

    async fn key_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT key_id FROM connections")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
