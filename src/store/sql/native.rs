//! SQLite's writer for the writes nearly every check makes: claims, rotated tokens, results.
//!
//! With `synchronous = FULL` each commit waits for the disk, so writes queued at the same moment
//! share one transaction (group commit), and each caller is answered only once it committed:
//! "stored" still means on disk. What queues while one transaction commits is the next one.
//!
//! It is a thread of its own with a connection of its own (the native driver), handed a whole
//! group commit at once: every statement runs prepared, on this thread, with no hop to another
//! thread and back per statement and per row, which is what a sweep spent most of its database
//! time on through sqlx. The other, rarer writes stay on sqlx; both take the store's turn to
//! write, so they queue in one fair line rather than in SQLite's busy handler.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use super::statements::{HealthyRow, P, RefreshedRow, RotateRow, Update};
use super::*;
use super::{checks, statements};

/// Writes that share one transaction at most.
const MAX_BATCH: usize = 1024;

/// Due connections of one provider, claimed under a lease.
pub(super) struct ClaimDue {
    pub provider: String,
    pub now: i64,
    pub limit: i64,
    pub owner: String,
    pub until: i64,
}

pub(super) enum Work {
    Claim(
        ClaimDue,
        oneshot::Sender<Result<Vec<NativeRow>, StoreError>>,
    ),
    Rotate(RotateRow, oneshot::Sender<Result<i64, StoreError>>),
    Healthy(HealthyRow, oneshot::Sender<Result<bool, StoreError>>),
    Refreshed(RefreshedRow, oneshot::Sender<Result<bool, StoreError>>),
}

/// A write done in the open transaction, answered once it committed (or did not).
enum Done {
    Claim(
        oneshot::Sender<Result<Vec<NativeRow>, StoreError>>,
        Result<Vec<NativeRow>, StoreError>,
    ),
    Rotate(
        oneshot::Sender<Result<i64, StoreError>>,
        Result<i64, StoreError>,
    ),
    Applied(
        oneshot::Sender<Result<bool, StoreError>>,
        Result<bool, StoreError>,
    ),
}

impl Done {
    fn answer(self, committed: &Result<(), String>) {
        fn send<T>(
            to: oneshot::Sender<Result<T, StoreError>>,
            r: Result<T, StoreError>,
            c: &Result<(), String>,
        ) {
            let _ = to.send(match c {
                Ok(()) => r,
                Err(e) => Err(StoreError::Commit(e.clone())),
            });
        }
        match self {
            Done::Claim(to, r) => send(to, r, committed),
            Done::Rotate(to, r) => send(to, r, committed),
            Done::Applied(to, r) => send(to, r, committed),
        }
    }
}

impl Work {
    fn fail(self, e: &str) {
        let e = StoreError::Commit(e.to_owned());
        match self {
            Work::Claim(_, to) => drop(to.send(Err(e))),
            Work::Rotate(_, to) => drop(to.send(Err(e))),
            Work::Healthy(_, to) | Work::Refreshed(_, to) => drop(to.send(Err(e))),
        }
    }
}

/// Opens the writer's connection (so that a database it cannot open fails the start) and starts
/// its thread, which ends when the store closes (or every sender is gone). Called on the
/// runtime, whose handle the thread waits for work with.
pub(super) fn start(
    path: &Path,
    turns: Arc<tokio::sync::Mutex<()>>,
    committed: Arc<tokio::sync::Notify>,
    workers: &Workers,
) -> Result<mpsc::Sender<Work>, StoreError> {
    let conn = open(path)?;
    let (queue, queued) = mpsc::channel(4096);
    let mut writer = Writer {
        path: path.to_owned(),
        conn: Some(conn),
        turns,
        committed,
        sql: Texts::new(),
        claim_columns: None,
    };
    let closing = workers.closing.clone();
    let runtime = tokio::runtime::Handle::current();
    let thread = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || writer.run(queued, &runtime, &closing))
        .map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
    workers.thread(thread);
    Ok(queue)
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    // As the pool's connections: a committed rotation survives a power cut.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )
    .map_err(native)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Copies every change in SQLite's log into the database file and empties the log, so that
/// the file is whole on its own; the log goes when this is the last connection to close.
pub(super) fn fold_log(path: &Path) -> Result<(), StoreError> {
    open(path)?
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(native)
}

fn native(e: rusqlite::Error) -> StoreError {
    StoreError::Commit(e.to_string())
}

struct Writer {
    path: PathBuf,
    /// None after a failure left it in doubt; opened again for the next batch.
    conn: Option<Connection>,
    turns: Arc<tokio::sync::Mutex<()>>,
    committed: Arc<tokio::sync::Notify>,
    sql: Texts,
    /// The claim's column names, read from its statement once.
    claim_columns: Option<Arc<[String]>>,
}

/// The texts of the writer's statements, made once (they are the prepared statements' keys).
struct Texts {
    /// A claim's statements (`checks::sqlite_claim`).
    instance: String,
    due: String,
    lease: String,
    read: String,
    /// In `Kind` order.
    writes: [String; 5],
}

/// The statements a check's writes use.
#[derive(Clone, Copy)]
enum Kind {
    Rotate,
    Healthy,
    Refreshed,
    HealthyHistory,
    RefreshedHistory,
}

impl Texts {
    fn new() -> Self {
        Texts {
            instance: checks::sqlite_claim::instance(),
            due: checks::sqlite_claim::due(),
            lease: checks::sqlite_claim::lease(),
            read: checks::sqlite_claim::read(),
            writes: [
                Update::rotate().direct(),
                Update::healthy().direct(),
                Update::refreshed().direct(),
                Update::healthy().guarded_history(),
                Update::refreshed().guarded_history(),
            ],
        }
    }
}

/// A batch's statements, each taken from the connection's cache once for the whole batch
/// rather than once per write: taking one and giving it back hashes its text both times, and
/// a check's two statements are a kilobyte and a half of text.
struct Prepared<'c> {
    conn: &'c Connection,
    sql: &'c Texts,
    taken: [Option<rusqlite::CachedStatement<'c>>; 5],
}

impl<'c> Prepared<'c> {
    fn new(conn: &'c Connection, sql: &'c Texts) -> Self {
        Prepared {
            conn,
            sql,
            taken: Default::default(),
        }
    }

    fn get(&mut self, kind: Kind) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.taken[kind as usize];
        let statement = match slot.take() {
            Some(s) => s,
            None => self.conn.prepare_cached(&self.sql.writes[kind as usize])?,
        };
        Ok(slot.insert(statement))
    }
}

impl Writer {
    fn run(
        &mut self,
        mut queue: mpsc::Receiver<Work>,
        runtime: &tokio::runtime::Handle,
        closing: &tokio_util::sync::CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = runtime.block_on(next(&mut queue, closing)) {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let turns = self.turns.clone();
            let _turn = turns.blocking_lock();
            self.commit(&mut batch);
        }
    }

    /// Runs `batch` in one transaction and answers each write once it committed.
    fn commit(&mut self, batch: &mut Vec<Work>) {
        if self.conn.is_none() {
            match open(&self.path) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return fail(batch, &e.to_string()),
            }
        }
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Whether SQLite is inside a transaction now is unknown: never reuse it.
            self.conn = None;
            return fail(batch, &e.to_string());
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut lost = None;
        let mut prepared = Prepared::new(conn, &self.sql);
        for work in batch.drain(..) {
            if lost.is_some() {
                work.fail("the transaction was rolled back");
                continue;
            }
            done.push(run(&mut prepared, work, &mut self.claim_columns));
            // Some failures (a full disk, an I/O error) roll the whole transaction back:
            // nothing after them may run outside it.
            if conn.is_autocommit() {
                lost = Some("the database rolled the transaction back".to_owned());
            }
        }
        drop(prepared);
        let committed = match lost {
            Some(e) => Err(e),
            None => conn.execute_batch("COMMIT").map_err(|e| e.to_string()),
        };
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            if !conn.is_autocommit() {
                self.conn = None;
            }
        } else {
            self.committed.notify_waiters();
        }
        for d in done {
            d.answer(&committed);
        }
    }
}

fn fail(batch: &mut Vec<Work>, e: &str) {
    for w in batch.drain(..) {
        w.fail(e);
    }
}

/// One write of the batch: a failed write leaves nothing of itself and takes no other with it.
fn run(p: &mut Prepared, work: Work, columns: &mut Option<Arc<[String]>>) -> Done {
    match work {
        Work::Claim(q, to) => Done::Claim(to, claim(p, &q, columns).map_err(native)),
        Work::Rotate(row, to) => Done::Rotate(to, rotate(p, &row)),
        Work::Healthy(row, to) => {
            let params = row.params().into_iter().chain([P::Int(row.row)]);
            let history = (Kind::HealthyHistory, params.collect());
            let r = finish(p, history, Kind::Healthy, &row);
            Done::Applied(to, r)
        }
        Work::Refreshed(row, to) => {
            let params = row.params().chain([P::Int(row.check.row)]);
            let history = (Kind::RefreshedHistory, params.collect());
            let r = finish(p, history, Kind::Refreshed, &row.check);
            Done::Applied(to, r)
        }
    }
}

/// A claim leases all its rows or none: a row leased by a claim whose caller heard it fail
/// would be taken over when the lease ran out, as if a refresh had been in flight.
fn claim(
    p: &Prepared,
    q: &ClaimDue,
    columns: &mut Option<Arc<[String]>>,
) -> rusqlite::Result<Vec<NativeRow>> {
    let conn = p.conn;
    conn.prepare_cached("SAVEPOINT claim")?.execute([])?;
    let claimed = lease_due(p, q, columns).and_then(|rows| {
        conn.prepare_cached("RELEASE claim")?.execute([])?;
        Ok(rows)
    });
    if claimed.is_err() {
        // Had the error rolled the whole transaction back, there is no savepoint left: the
        // writer sees that and fails the batch.
        let _ = conn.execute_batch("ROLLBACK TO claim; RELEASE claim");
    }
    claimed
}

/// The due rows' rowids, then each row leased and read back as the claim hands it out.
fn lease_due(
    p: &Prepared,
    q: &ClaimDue,
    columns: &mut Option<Arc<[String]>>,
) -> rusqlite::Result<Vec<NativeRow>> {
    let conn = p.conn;
    conn.prepare_cached(statements::REGISTER_INSTANCE)?
        .execute([&q.owner])?;
    let owner: i64 = conn
        .prepare_cached(&p.sql.instance)?
        .query_row([&q.owner], |r| r.get(0))?;
    let due = conn
        .prepare_cached(&p.sql.due)?
        .query_map(
            &[
                ("$3", &q.provider as &dyn rusqlite::ToSql),
                ("$4", &q.now),
                ("$5", &q.limit),
            ][..],
            |r| r.get::<_, i64>(0),
        )?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let mut lease = conn.prepare_cached(&p.sql.lease)?;
    let mut read = conn.prepare_cached(&p.sql.read)?;
    let names = match columns {
        Some(names) => names.clone(),
        None => {
            let names: Arc<[String]> = read.column_names().into_iter().map(str::to_owned).collect();
            *columns = Some(names.clone());
            names
        }
    };
    let width = names.len();
    let mut out = Vec::with_capacity(due.len());
    for row in due {
        // Named: `$4` comes before `$3` in the text, and SQLite numbers names as they appear.
        lease.execute(
            &[
                ("$1", &owner as &dyn rusqlite::ToSql),
                ("$2", &q.until),
                ("$3", &row),
                ("$4", &q.now),
            ][..],
        )?;
        let mut rows = read.query([row])?;
        if let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(r.get::<_, rusqlite::types::Value>(i)?);
            }
            out.push(NativeRow::new(names.clone(), values));
        }
    }
    Ok(out)
}

fn rotate(p: &mut Prepared, row: &RotateRow) -> Result<i64, StoreError> {
    let applied = p
        .get(Kind::Rotate)
        .and_then(|s| s.execute(rusqlite::params_from_iter(row.params())))
        .map_err(native)?;
    let conn = p.conn;
    if applied == 1 {
        return Ok(row.expected + 1);
    }
    // Which guard refused it: the lease or the tokens?
    let owner: Option<Option<String>> = conn
        .prepare_cached(statements::LEASE_OWNER)
        .and_then(|mut s| {
            let mut rows = s.query([row.id.as_str()])?;
            rows.next()?.map(|r| r.get(0)).transpose()
        })
        .map_err(native)?;
    Err(statements::refused(owner, &row.id, &row.owner))
}

/// A finished check's history row, written only if its connection is as claimed, then the
/// update of the connection (with the same guard) that names it the last check: one write of
/// the connection row. `false`, with nothing written, when the connection is not as claimed.
fn finish(
    p: &mut Prepared,
    (history, params): (Kind, Vec<P>),
    update: Kind,
    check: &HealthyRow,
) -> Result<bool, StoreError> {
    let own = check.history().into_iter().skip(1);
    let recorded = p
        .get(history)
        .and_then(|s| {
            s.execute(rusqlite::params_from_iter(
                params.iter().copied().chain(own),
            ))
        })
        .map_err(native)?;
    if recorded == 0 {
        return Ok(false);
    }
    let conn = p.conn;
    let last = conn.last_insert_rowid();
    let applied = p.get(update).and_then(|s| {
        s.execute(rusqlite::params_from_iter(
            params.into_iter().chain([P::Int(Some(last))]),
        ))
    });
    if matches!(applied, Ok(1)) {
        return Ok(true);
    }
    // The update did not apply (the guard just held in this transaction: only an error stops it):
    // its history row goes too. Were that to fail as well, the row would stay unseen: history
    // is read along the chain from the connection's last check, which does not name it.
    let _ = conn
        .prepare_cached("DELETE FROM checks WHERE id = ?1")
        .and_then(|mut s| s.execute([last]));
    applied.map(|_| false).map_err(native)
}
