//! Group commit for SQLite. A check writes twice (the rotated tokens, then its result), and
//! with `synchronous = FULL` each commit waits for the disk: one transaction per write caps a
//! sweep near a thousand checks a second. Writes queued at the same moment share one
//! transaction instead, each under its own savepoint, and each caller is answered only once
//! that transaction has committed, so "stored" still means on disk.

use std::future::Future;
use std::pin::Pin;

use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

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
/// It ends when the store (the only sender) is dropped.
pub(super) async fn writer(
    pool: AnyPool,
    turns: Arc<tokio::sync::Mutex<()>>,
    mut queue: mpsc::Receiver<Queued>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        // Let the checks running beside this one queue their writes too: a few scheduler turns
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
                for q in batch {
                    let _ = q.done.send(Err(e.to_string()));
                }
                continue;
            }
        };
        if let Err(e) = conn.execute("BEGIN IMMEDIATE").await {
            for q in batch {
                let _ = q.done.send(Err(e.to_string()));
            }
            continue;
        }
        let mut waiting = Vec::with_capacity(batch.len());
        for q in batch {
            if q.savepoint {
                let ok = conn.execute("SAVEPOINT write").await.is_ok();
                let keep = ok && (q.run)(&mut conn).await;
                let end = if keep {
                    conn.execute("RELEASE write").await
                } else {
                    // Nothing of a failed write is kept; the others in the batch are unaffected.
                    let _ = conn.execute("ROLLBACK TO write").await;
                    conn.execute("RELEASE write").await
                };
                if let Err(e) = end {
                    tracing::error!("a batched write could not end its savepoint: {e}");
                }
            } else {
                (q.run)(&mut conn).await;
            }
            waiting.push(q.done);
        }
        let committed = conn
            .execute("COMMIT")
            .await
            .map(drop)
            .map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = conn.execute("ROLLBACK").await;
        }
        for done in waiting {
            let _ = done.send(committed.clone());
        }
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
            .map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
        let committed = committed
            .await
            .map_err(|_| StoreError::Commit("the store's writer has stopped".into()))?;
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
