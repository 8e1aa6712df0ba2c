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
mod alerts;
mod batch;
mod checks;
mod codes;
mod connect;
mod connections;
mod deliveries;
mod events;
mod handouts;
mod keys;
mod merged;
mod native;
mod outbox;
mod pg_batch;
mod pipelines;
mod reauth;
mod rows;
mod statements;
mod store_impl;
mod unnested;

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

    /// A claim's returned column `row_slot`, where the row was found: SQLite's rowid, with
    /// which the check's writes find the row again without the id's index.
    pub(super) fn row_column(self) -> &'static str {
        match self {
            Backend::Sqlite => ", rowid AS row_slot",
            Backend::Postgres => "",
        }
    }

    /// The rows whose `key` is among those `subquery` found (a claim's due rows). On
    /// PostgreSQL as an array, not `IN`: for `IN (subquery)` the generic plan that a prepared
    /// statement settles on after a few runs hashes the keys found and reads the whole table
    /// to match them, on every claim.
    pub(super) fn found_by(self, key: &str, subquery: &str) -> String {
        match self {
            Backend::Sqlite => format!("{key} IN ({subquery})"),
            Backend::Postgres => format!("{key} = ANY(ARRAY({subquery}))"),
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

    /// The `n`th parameter (from 1), for statements with hundreds of them: SQLite looks a
    /// numbered parameter's name up in a list once per parameter bound, which is quadratic
    /// there; its `?` are plain positions, so they must appear in the order they are bound.
    pub(super) fn param(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
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

/// PostgreSQL connections a daemon keeps for its claims, beside the pool.
const CLAIM_CONNECTIONS: u32 = 3;

const CONNECTION_COLUMNS: &str = "id, provider, name, owner_email, account, scopes, status, reason, status_since, \
     CAST(CASE WHEN refresh_token IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_refresh_token, token_generation, access_expires_at, refresh_expires_at, \
     consecutive_failures, refresh_uncertain_since, refresh_interrupted_at, set_aside, last_check_at, next_check_at, created_at, external_id, metadata, credential_kind, instance_url";
/// What the service's status line says every 30 s. Each count is read from an index (the
/// connections that are not healthy, the set-aside ones and the paused pipelines from indexes
/// of only those rows), not by reading a table whole; the healthy are what the others leave.
/// SQLite uses the index of the unhealthy only where the query repeats its condition: it does
/// not derive it from `status = 'broken'`.
const COUNTS: &str = "SELECT \
       (SELECT COUNT(*) FROM connections) AS connections, \
       (SELECT COUNT(*) FROM connections WHERE status <> 'healthy' AND status = 'degraded') AS degraded, \
       (SELECT COUNT(*) FROM connections WHERE status <> 'healthy' AND status = 'broken') AS broken, \
       (SELECT COUNT(*) FROM connections WHERE set_aside IS NOT NULL) AS set_aside, \
       (SELECT COUNT(*) FROM pipelines) AS pipelines, \
       (SELECT COUNT(*) FROM pipelines WHERE state = 'paused') AS paused";
/// What every scrape of `/metrics` counts: the unhealthy from their own index, each provider's
/// healthy as its count (from the due index) less its unhealthy. A provider with none healthy
/// has no healthy row, as it has no row of a status none of its connections has.
const METRICS: &str = "SELECT provider, status, reason, COUNT(*) AS n FROM connections \
       WHERE status <> 'healthy' GROUP BY provider, status, reason \
     UNION ALL \
     SELECT provider, 'healthy' AS status, NULL AS reason, \
       COUNT(*) - (SELECT COUNT(*) FROM connections u \
                   WHERE u.provider = c.provider AND u.status <> 'healthy') AS n \
     FROM connections c GROUP BY provider \
     HAVING COUNT(*) > (SELECT COUNT(*) FROM connections u \
                        WHERE u.provider = c.provider AND u.status <> 'healthy') \
     ORDER BY provider, status, reason";
const PIPELINE_COLUMNS: &str = "id, name, state, position, position_updated_at, paused_at_position, paused_at, \
     paused_by, pause_reason, created_at, external_id";

pub struct SqlStore {
    pool: AnyPool,
    keyring: Arc<Keyring>,
    backend: Backend,
    /// SQLite has one writer at a time; PostgreSQL locks rows.
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite's group commit of the other writes (see `batch`).
    batch: Option<tokio::sync::mpsc::Sender<batch::Queued>>,
    /// Where the writes nearly every check makes go.
    checks_writer: ChecksWriter,
    /// Hand-out reads, grouped (see `handouts`).
    handouts: tokio::sync::mpsc::Sender<handouts::Asked>,
    /// Woken after every commit of this process's writes.
    committed: Arc<tokio::sync::Notify>,
    writes: WriteHealth,
    /// The writers and readers above, stopped by `close` once what they were given is done.
    workers: Workers,
    /// SQLite's database file, whose log `close` folds in.
    sqlite_file: Option<std::path::PathBuf>,
}

/// The store's own tasks and threads, and what tells them to stop.
#[derive(Default)]
struct Workers {
    closing: tokio_util::sync::CancellationToken,
    tasks: tokio_util::task::TaskTracker,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Workers {
    fn thread(&self, handle: std::thread::JoinHandle<()>) {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Lets every worker finish what was queued before, then waits for each to end.
    async fn close(&self) {
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for thread in threads {
            if tokio::task::spawn_blocking(move || thread.join())
                .await
                .is_err()
            {
                tracing::error!("a database writer thread panicked");
            }
        }
    }
}

/// The next request from `queue`, or None once the store closes and everything sent before
/// has been taken: a request already queued is always answered.
async fn next<T>(
    queue: &mut tokio::sync::mpsc::Receiver<T>,
    closing: &tokio_util::sync::CancellationToken,
) -> Option<T> {
    tokio::select! {
        biased;
        () = closing.cancelled() => {
            queue.close();
            queue.recv().await
        }
        item = queue.recv() => item,
    }
}

/// The group commit of claims, rotations and results: SQLite's writer thread, or PostgreSQL's
/// group writers (their own thread) and a native connection for claims.
enum ChecksWriter {
    Sqlite(tokio::sync::mpsc::Sender<native::Work>),
    Postgres {
        groups: tokio::sync::mpsc::Sender<pg_batch::Queued>,
        /// Claims, through the native driver.
        claims: sqlx::postgres::PgPool,
    },
}

/// A connection's tokens as stored, under one key: both sealed together in `access_token`,
/// and `refresh_token` empty when the pair has a refresh token, NULL when not (that column is
/// what says whether a connection has one). Rows written before the pair have each token
/// sealed alone, one per column; they are read as they are and sealed as a pair when their
/// tokens are next written.
pub(super) struct SealedTokens {
    pub key_id: String,
    pub access: Vec<u8>,
    pub refresh: Option<Vec<u8>>,
}

/// Starts the tasks that read hand-outs in groups.
fn handout_readers(
    pool: &AnyPool,
    keyring: &Arc<Keyring>,
    workers: &Workers,
) -> tokio::sync::mpsc::Sender<handouts::Asked> {
    let (ask, asked) = tokio::sync::mpsc::channel(1024);
    let asked = Arc::new(tokio::sync::Mutex::new(asked));
    for _ in 0..handouts::READERS {
        workers.tasks.spawn(handouts::reader(
            pool.clone(),
            keyring.clone(),
            asked.clone(),
            workers.closing.clone(),
        ));
    }
    ask
}

/// A write transaction, holding this process's turn to write while it lasts.
pub(super) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    committed: Arc<tokio::sync::Notify>,
}

impl WriteTx {
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.committed.notify_waiters();
        Ok(())
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
            .after_release(discard_if_in_transaction)
            .connect(&url)
            .await?;
        let turns = Arc::new(tokio::sync::Mutex::new(()));
        let (queue, queued) = tokio::sync::mpsc::channel(4096);
        let committed = Arc::new(tokio::sync::Notify::new());
        let workers = Workers::default();
        workers.tasks.spawn(batch::writer(
            pool.clone(),
            turns.clone(),
            queued,
            committed.clone(),
            workers.closing.clone(),
        ));
        let file = absolute(path)?;
        let native = native::start(&file, turns.clone(), committed.clone(), &workers)?;
        Ok(Self {
            sqlite_file: Some(file),
            checks_writer: ChecksWriter::Sqlite(native),
            committed,
            handouts: handout_readers(&pool, &keyring, &workers),
            workers,
            pool,
            keyring,
            backend: Backend::Sqlite,
            writers: Some(turns),
            batch: Some(queue),
            writes: WriteHealth::default(),
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
            // A database that does not answer in this time is down: the caller retries and
            // says so, rather than every write waiting the default 30 s.
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // No transaction of ours waits on anything outside the database. One left
                    // open by a stalled or frozen process would hold its locks (the event lock
                    // among them) for every replica: the server ends it instead.
                    conn.execute("SET idle_in_transaction_session_timeout = '30s'")
                        .await?;
                    Ok(())
                })
            })
            .after_release(discard_if_in_transaction)
            .connect(url.expose_secret())
            .await?;
        let workers = Workers::default();
        let groups = pg_batch::start(url.clone(), &workers).await?;
        // Providers sweep at once, each claiming in turn: a few connections, so that one claim
        // (tens of milliseconds) does not make the others wait out the pool's timeout.
        let claims = unnested::pool(url.expose_secret(), CLAIM_CONNECTIONS).await?;
        Ok(Self {
            committed: Arc::new(tokio::sync::Notify::new()),
            handouts: handout_readers(&pool, &keyring, &workers),
            workers,
            checks_writer: ChecksWriter::Postgres { groups, claims },
            sqlite_file: None,
            pool,
            keyring,
            backend: Backend::Postgres,
            writers: None,
            batch: None,
            writes: WriteHealth::default(),
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
            committed: self.committed.clone(),
        })
    }

    /// A write the daemon's work depends on, reported to `writes` on its way out; `wrote`
    /// says whether a success wrote anything.
    fn watched<T>(
        &self,
        result: Result<T, StoreError>,
        wrote: impl Fn(&T) -> bool,
    ) -> Result<T, StoreError> {
        self.writes.record(&result, wrote);
        result
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

/// A connection goes back to the pool only outside any transaction. When a commit fails
/// (SQLite on a full disk rolls back by itself), the rollback sqlx then sends fails too, and
/// the connection would stay counted as inside a transaction: every later write on it would
/// fail ("begin_with at non-zero transaction depth") until the daemon restarts.
fn discard_if_in_transaction(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + '_>> {
    use sqlx::Connection;
    Box::pin(async move {
        // Runs the rollback that a dropped transaction queued, so the answer is current.
        conn.ping().await?;
        Ok(!conn.is_in_transaction())
    })
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
    /// A connection's tokens sealed for storing, bound to its row: the one place tokens are
    /// sealed. `keep_refresh` stands in when the set has no refresh token (a provider that does
    /// not rotate keeps the old one; it is sealed again, under the current key, which is how a
    /// key rotation spreads).
    pub(super) fn seal_tokens(
        &self,
        id: &ConnectionId,
        tokens: &TokenSet,
        keep_refresh: Option<&SecretString>,
    ) -> Result<SealedTokens, StoreError> {
        let refresh = tokens.refresh_token.as_ref().or(keep_refresh);
        let sealed = self.keyring.seal_pair(
            &tokens.access_token,
            refresh,
            &token_context(id, "access_token"),
        )?;
        Ok(SealedTokens {
            key_id: sealed.key_id.as_str().to_owned(),
            access: sealed.blob,
            refresh: refresh.map(|_| Vec::new()),
        })
    }

    /// Opens the sealed tokens of a row that has key_id, access_token, refresh_token and
    /// token_generation.
    fn tokens_from_row<R: Columns>(
        &self,
        id: &ConnectionId,
        row: &R,
    ) -> Result<StoredTokens, StoreError> {
        let key_id: String = row.get("key_id")?;
        let access: Vec<u8> = row.get("access_token")?;
        let refresh: Option<Vec<u8>> = row.get("refresh_token")?;
        let (access_token, refresh_token) =
            open_tokens(&self.keyring, id, &key_id, &access, refresh.as_deref())?;
        Ok(StoredTokens {
            access_token,
            refresh_token,
            generation: row.get("token_generation")?,
        })
    }
}

/// Opens a row's tokens, as a pair or (rows written before the pair) one blob per column.
fn open_tokens(
    keyring: &Keyring,
    id: &ConnectionId,
    key_id: &str,
    access: &[u8],
    refresh: Option<&[u8]>,
) -> Result<(SecretString, Option<SecretString>), StoreError> {
    let access_context = token_context(id, "access_token");
    if Keyring::is_pair(access) {
        let (access, inside) = keyring.open_pair(key_id, access, &access_context)?;
        // The column says whether there is a refresh token: one that disagrees was altered.
        if refresh.is_some_and(|r| !r.is_empty()) || refresh.is_some() != inside.is_some() {
            return Err(CryptoError::Tampered {
                key_id: key_id.to_owned(),
            }
            .into());
        }
        return Ok((access, inside));
    }
    let refresh = refresh
        .map(|blob| keyring.open(key_id, blob, &token_context(id, "refresh_token")))
        .transpose()?;
    Ok((keyring.open(key_id, access, &access_context)?, refresh))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn opened(r: (SecretString, Option<SecretString>)) -> (String, Option<String>) {
        let refresh = r.1.map(|t| t.expose_secret().to_owned());
        (r.0.expose_secret().to_owned(), refresh)
    }

    /// SQLite's plan for `sql` on a migrated database in `dir`, one step a line.
    async fn plan(dir: &std::path::Path, sql: &str) -> Vec<String> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("plan.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        SQLITE.run(&pool).await.unwrap();
        sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect()
    }

    /// The status line's counts and the metrics' read only indexes: never a table's rows.
    #[tokio::test]
    async fn the_status_counts_and_metrics_read_indexes_only() {
        let dir = tempfile::tempdir().unwrap();
        for (sql, steps) in [(COUNTS, 6), (METRICS, 3)] {
            let details = plan(dir.path(), sql).await;
            let reads: Vec<&String> = details
                .iter()
                .filter(|s| s.starts_with("SCAN ") || s.starts_with("SEARCH "))
                .filter(|s| !s.contains("CONSTANT ROW"))
                .collect();
            assert!(reads.len() >= steps, "{details:?}");
            for step in reads {
                assert!(
                    step.contains("COVERING INDEX"),
                    "reads table rows: {step} (of {details:?})"
                );
            }
        }
    }

    /// The tables that name the history's numbers, in both backends' migrations, say what the
    /// code means by them.
    #[test]
    fn the_databases_name_the_history_numbers_as_the_code_does() {
        let rows = codes::table_rows();
        for backend in ["sqlite", "postgres"] {
            let sql = std::fs::read_to_string(format!(
                "{}/migrations/{backend}/0022_check_codes.sql",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            for row in &rows {
                assert!(sql.contains(row.as_str()), "{backend}: {row}");
            }
            assert_eq!(sql.matches("\n    (").count(), rows.len(), "{backend}");
        }
    }

    /// PostgreSQL's claims hand the due ids over as an array (see `Backend::found_by`; seen in
    /// a benchmark: the claim's cost grew with the number of connections).
    #[test]
    fn a_postgresql_claim_finds_the_due_rows_by_their_ids() {
        let sql = checks::claim_due_sql();
        assert!(
            sql.contains("WHERE id = ANY(ARRAY(SELECT id FROM connections"),
            "{sql}"
        );
        assert!(!sql.contains(" IN ("), "{sql}");
        // The outbox's claim too.
        assert_eq!(
            Backend::Postgres.found_by("id", "SELECT id FROM outbox"),
            "id = ANY(ARRAY(SELECT id FROM outbox))"
        );
    }

    /// A check's result is written where its claim found the row, not looked up by id again,
    /// and a claim leases and reads the due rows it found by their rowids.
    #[tokio::test]
    async fn a_checks_writes_find_the_row_by_its_rowid() {
        use statements::Update;
        let dir = tempfile::tempdir().unwrap();
        let (healthy, refreshed) = (Update::healthy(), Update::refreshed());
        for sql in [
            healthy.direct(),
            healthy.guarded_history(),
            refreshed.direct(),
            refreshed.guarded_history(),
            checks::sqlite_claim::lease(),
            checks::sqlite_claim::read(),
        ] {
            let details = plan(dir.path(), &sql).await;
            let found = details
                .iter()
                .find(|d| d.contains(" connections "))
                .unwrap();
            assert!(
                found.contains("INTEGER PRIMARY KEY (rowid=?)"),
                "{found} (of {details:?})"
            );
        }
    }

    #[test]
    fn rows_sealed_a_token_a_column_and_rows_sealed_as_a_pair_both_open() {
        let ring = Keyring::from_bytes([3; 32]);
        let id = ConnectionId::generate();
        let secret = |s: &str| SecretString::from(s.to_owned());
        let (access, refresh) = (secret("at"), secret("rt"));
        let key = ring.current_id().as_str().to_owned();
        let want = |r: Option<&str>| ("at".to_owned(), r.map(str::to_owned));

        // Before the pair: one blob per column, each bound to its column.
        let a = ring
            .seal(&access, &token_context(&id, "access_token"))
            .unwrap()
            .blob;
        let r = ring
            .seal(&refresh, &token_context(&id, "refresh_token"))
            .unwrap()
            .blob;
        let old = open_tokens(&ring, &id, &key, &a, Some(&r)).unwrap();
        assert_eq!(opened(old), want(Some("rt")));
        assert_eq!(
            opened(open_tokens(&ring, &id, &key, &a, None).unwrap()),
            want(None)
        );

        // The pair, with the refresh column saying whether it holds a refresh token.
        let store = |refresh: Option<&SecretString>| {
            let sealed = ring.seal_pair(&access, refresh, &token_context(&id, "access_token"));
            (sealed.unwrap().blob, refresh.map(|_| Vec::new()))
        };
        let (pair, column) = store(Some(&refresh));
        let new = open_tokens(&ring, &id, &key, &pair, column.as_deref()).unwrap();
        assert_eq!(opened(new), want(Some("rt")));
        let (alone, none) = store(None);
        assert_eq!(
            opened(open_tokens(&ring, &id, &key, &alone, none.as_deref()).unwrap()),
            want(None)
        );

        // A column that disagrees with its pair was altered.
        for (blob, column) in [
            (&pair, None),
            (&alone, Some(&[][..])),
            (&pair, Some(&r[..])),
        ] {
            let err = open_tokens(&ring, &id, &key, blob, column).unwrap_err();
            assert!(
                matches!(err, StoreError::Crypto(CryptoError::Tampered { .. })),
                "{err}"
            );
        }
    }
}
