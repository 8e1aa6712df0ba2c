//! Group commit for SQLite's other writes (those that are not a claim, rotated tokens or a
//! healthy result, which `native` takes): with `synchronous = FULL` each commit waits for the
//! disk, so writes queued at the same moment share one transaction, each under its own
//! savepoint, and each caller is answered only once that transaction has committed. On
//! PostgreSQL (which group-commits concurrent transactions itself) each is its own.

use std::future::Future;
use std::pin::Pin;

use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::statements::{HealthyRow, RefreshedRow, RotateRow};
use super::*;

/// Writes that share one transaction at most.
const MAX_BATCH: usize = 512;
/// Scheduler turns the writer waits for more writes before it commits.
const LINGER_TURNS: usize = 3;

pub(super) type BoxFut<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;
type Job = Box<dyn for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFut<'c, bool> + Send>;

pub(super) struct Queued {
    run: Job,
    /// Whether the write needs a savepoint: one that can fail after writing something.
    savepoint: bool,
    done: oneshot::Sender<Result<(), String>>,
}

fn job<F>(f: F) -> Job
where
    F: for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFut<'c, bool> + Send + 'static,
{
    Box::new(f)
}

/// The one writer: takes what is queued, runs it in one transaction, commits, answers.
/// It ends when the store closes, or is dropped.
pub(super) async fn writer(
    pool: AnyPool,
    turns: Arc<tokio::sync::Mutex<()>>,
    mut queue: mpsc::Receiver<Queued>,
    committed_signal: Arc<tokio::sync::Notify>,
    closing: tokio_util::sync::CancellationToken,
) {
    while let Some(first) = super::next(&mut queue, &closing).await {
        let mut batch = vec![first];
        // Let the tasks running beside this one queue their writes too: a few scheduler turns
        // cost microseconds, a commit costs a disk flush.
        for _ in 0..LINGER_TURNS {
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            tokio::task::yield_now().await;
        }
        let _turn = turns.lock().await;
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                fail(batch, &e);
                continue;
            }
        };
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            // Whether SQLite is inside a transaction now is unknown: never reuse it.
            conn.close_on_drop();
            fail(batch, &e);
            continue;
        }
        let mut waiting = Vec::with_capacity(batch.len());
        for Queued {
            run,
            savepoint,
            done,
        } in batch
        {
            run_job(&mut conn, run, savepoint).await;
            waiting.push(done);
        }
        let committed = conn
            .execute("COMMIT")
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        if committed.is_err() {
            // SQLite may or may not have rolled back by itself (it does on a full disk): a
            // connection left inside a transaction would fail every later write.
            let _ = conn.execute("ROLLBACK").await;
            conn.close_on_drop();
        } else {
            committed_signal.notify_waiters();
        }
        for done in waiting {
            let _ = done.send(committed.clone());
        }
    }
}

/// Answers every write of a batch that could not begin.
fn fail(batch: Vec<Queued>, e: &sqlx::Error) {
    let e = e.to_string();
    for q in batch {
        let _ = q.done.send(Err(e.clone()));
    }
}

async fn run_job(conn: &mut sqlx::AnyConnection, run: Job, savepoint: bool) {
    if !savepoint {
        run(conn).await;
        return;
    }
    let ok = conn.execute("SAVEPOINT write").await.is_ok();
    let keep = ok && run(conn).await;
    end_savepoint(conn, "write", keep).await;
}

async fn end_savepoint(conn: &mut sqlx::AnyConnection, name: &str, keep: bool) {
    if !keep {
        // Nothing of a failed write is kept; the others in the batch are unaffected.
        let _ = conn.execute(format!("ROLLBACK TO {name}").as_str()).await;
    }
    if let Err(e) = conn.execute(format!("RELEASE {name}").as_str()).await {
        tracing::error!("a batched write could not end its savepoint: {e}");
    }
}

impl SqlStore {
    /// Runs `f` inside a transaction: on SQLite in the next group commit, on PostgreSQL (which
    /// group-commits concurrent transactions itself) in its own. A result is returned only
    /// after its commit. `keep_on` says which errors still keep what `f` wrote.
    pub(super) async fn batched<X, F>(
        &self,
        savepoint: bool,
        keep_on: fn(&StoreError) -> bool,
        f: F,
    ) -> Result<X, StoreError>
    where
        X: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFut<'c, Result<X, StoreError>>
            + Send
            + 'static,
    {
        let Some(queue) = &self.batch else {
            let mut tx = self.write().await?;
            let result = f(&mut tx).await;
            match &result {
                Ok(_) => tx.commit().await?,
                Err(e) if keep_on(e) => tx.commit().await?,
                Err(_) => {}
            }
            return result;
        };
        let slot = Arc::new(std::sync::Mutex::new(None));
        let out = slot.clone();
        let run = job(move |conn| {
            Box::pin(async move {
                let result = f(conn).await;
                let keep = match &result {
                    Ok(_) => true,
                    Err(e) => keep_on(e),
                };
                *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                keep
            })
        });
        let (done, committed) = oneshot::channel();
        queue
            .send(Queued {
                run,
                savepoint,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        let committed = committed.await.map_err(|_| stopped())?;
        let result = slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| Err(StoreError::Commit("a write did not run".into())));
        match (committed, result) {
            (Ok(()), result) => result,
            // A write that failed on its own says why; one that succeeded was not committed.
            (Err(_), Err(e)) => Err(e),
            (Err(e), Ok(_)) => Err(StoreError::Commit(e)),
        }
    }
}

/// Hands a writer (`native`'s, `pg_batch`'s) one write and waits for its answer, given after
/// the commit.
pub(super) async fn ask<W, T>(
    writer: &mpsc::Sender<W>,
    work: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> W,
) -> Result<T, StoreError> {
    let (done, answer) = oneshot::channel();
    writer.send(work(done)).await.map_err(|_| stopped())?;
    answer.await.map_err(|_| stopped())?
}

fn stopped() -> StoreError {
    StoreError::Commit("the store's writer has stopped".into())
}

impl SqlStore {
    /// Stores rotated tokens with the writer's next commit.
    pub(super) async fn store_rotation(&self, row: RotateRow) -> Result<i64, StoreError> {
        match &self.checks_writer {
            ChecksWriter::Sqlite(w) => ask(w, |done| native::Work::Rotate(row, done)).await,
            ChecksWriter::Postgres { groups: w, .. } => {
                ask(w, |done| pg_batch::Queued::Rotate(row, done)).await
            }
        }
    }

    /// Finishes a check of a healthy connection found healthy: `false` (nothing written) when
    /// it is not healthy or not ours any more.
    pub(super) async fn store_healthy(&self, row: HealthyRow) -> Result<bool, StoreError> {
        match &self.checks_writer {
            ChecksWriter::Sqlite(w) => ask(w, |done| native::Work::Healthy(row, done)).await,
            ChecksWriter::Postgres { groups: w, .. } => {
                ask(w, |done| pg_batch::Queued::Healthy(row, done)).await
            }
        }
    }

    /// Stores refreshed tokens with a healthy result: `false` (nothing written) when anything
    /// is not as claimed.
    pub(super) async fn store_refreshed(&self, row: RefreshedRow) -> Result<bool, StoreError> {
        match &self.checks_writer {
            ChecksWriter::Sqlite(w) => ask(w, |done| native::Work::Refreshed(row, done)).await,
            ChecksWriter::Postgres { groups: w, .. } => {
                ask(w, |done| pg_batch::Queued::Refreshed(row, done)).await
            }
        }
    }
}
