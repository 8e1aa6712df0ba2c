//! PostgreSQL's group commit of the writes nearly every check makes (rotated tokens, results).
//! One transaction per check costs a round trip per statement and a WAL flush per commit; a
//! replica's checks finishing at the same moment share one transaction instead, their rows
//! merged into a few multi-row statements (see `merged`), each kind under its own savepoint.
//! Each caller is answered only once that transaction has committed. Replicas each have their
//! own writer; their rows never overlap (each is under its own lease).

use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::merged;
use super::statements::{HealthyRow, RefreshedRow, RotateRow};
use super::*;

/// Writes that share one transaction at most.
const MAX_BATCH: usize = 512;
/// Scheduler turns the writer waits for more writes before it commits: a few turns cost
/// microseconds, a commit a round trip and a flush.
const LINGER_TURNS: usize = 3;

pub(super) enum Queued {
    Rotate(RotateRow, oneshot::Sender<Result<i64, StoreError>>),
    Healthy(HealthyRow, oneshot::Sender<Result<bool, StoreError>>),
    Refreshed(RefreshedRow, oneshot::Sender<Result<bool, StoreError>>),
}

/// Starts the writer; it ends when the store (the only sender) is dropped.
pub(super) fn start(pool: AnyPool) -> mpsc::Sender<Queued> {
    let (queue, queued) = mpsc::channel(4096);
    tokio::spawn(writer(pool, queued));
    queue
}

/// Runs one kind of merged write under a savepoint when the batch has others: a failed
/// statement undoes that kind only. Alone, its failure is the transaction's.
macro_rules! savepointed {
    ($conn:ident, $alone:expr, $write:expr) => {
        if $alone {
            $write.await
        } else {
            match $conn.execute("SAVEPOINT merged").await {
                Ok(_) => {
                    let result = $write.await;
                    if result.is_err() {
                        let _ = $conn.execute("ROLLBACK TO merged").await;
                    }
                    match $conn.execute("RELEASE merged").await {
                        Ok(_) => result,
                        Err(e) => Err(StoreError::from(e)),
                    }
                }
                Err(e) => Err(StoreError::from(e)),
            }
        }
    };
}

async fn writer(pool: AnyPool, mut queue: mpsc::Receiver<Queued>) {
    while let Some(first) = queue.recv().await {
        // A rotation is committed at once: until it is, a crash loses tokens the provider
        // already considers the live ones. Whatever queued meanwhile still goes with it.
        let urgent = matches!(first, Queued::Rotate(..) | Queued::Refreshed(..));
        let mut batch = vec![first];
        for _ in 0..if urgent { 1 } else { LINGER_TURNS } {
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            if !urgent {
                tokio::task::yield_now().await;
            }
        }
        let (mut rotations, mut rotated_to) = (Vec::new(), Vec::new());
        let (mut healthy, mut healthy_to) = (Vec::new(), Vec::new());
        let (mut refreshed, mut refreshed_to) = (Vec::new(), Vec::new());
        for q in batch {
            match q {
                Queued::Rotate(row, done) => {
                    rotations.push(row);
                    rotated_to.push(done);
                }
                Queued::Healthy(row, done) => {
                    healthy.push(row);
                    healthy_to.push(done);
                }
                Queued::Refreshed(row, done) => {
                    refreshed.push(row);
                    refreshed_to.push(done);
                }
            }
        }
        let mut conn = match pool.begin_with(Backend::Postgres.begin()).await {
            Ok(c) => c,
            Err(e) => {
                let e = e.to_string();
                answer(rotated_to, Err(StoreError::Commit(e.clone())), &Ok(()));
                answer(healthy_to, Err(StoreError::Commit(e.clone())), &Ok(()));
                answer(refreshed_to, Err(StoreError::Commit(e)), &Ok(()));
                continue;
            }
        };
        let pg = Backend::Postgres;
        let kinds = [
            rotations.is_empty(),
            healthy.is_empty(),
            refreshed.is_empty(),
        ];
        let alone = kinds.iter().filter(|empty| !**empty).count() == 1;
        let rotated = if rotations.is_empty() {
            Ok(Vec::new())
        } else {
            savepointed!(conn, alone, merged::rotate(&mut conn, pg, &rotations))
        };
        let healed = if healthy.is_empty() {
            Ok(Vec::new())
        } else {
            savepointed!(conn, alone, merged::finish_healthy(&mut conn, pg, &healthy))
                .map(|applied| applied.into_iter().map(Ok).collect())
        };
        let done = if refreshed.is_empty() {
            Ok(Vec::new())
        } else {
            savepointed!(conn, alone, merged::refreshed(&mut conn, pg, &refreshed))
                .map(|applied| applied.into_iter().map(Ok).collect())
        };
        // A failed commit is rolled back when the transaction is dropped.
        let committed = conn.commit().await.map_err(|e| e.to_string());
        answer(rotated_to, rotated, &committed);
        answer(healthy_to, healed, &committed);
        answer(refreshed_to, done, &committed);
    }
}

/// Each merged row's own answer once the batch committed; a failed statement or commit is
/// every row's answer.
fn answer<T>(
    to: Vec<oneshot::Sender<Result<T, StoreError>>>,
    results: Result<Vec<Result<T, StoreError>>, StoreError>,
    committed: &Result<(), String>,
) {
    match (committed, results) {
        (Ok(()), Ok(results)) => {
            for (done, result) in to.into_iter().zip(results) {
                let _ = done.send(result);
            }
        }
        (Err(e), _) => {
            for done in to {
                let _ = done.send(Err(StoreError::Commit(e.clone())));
            }
        }
        (Ok(()), Err(e)) => {
            let e = e.to_string();
            for done in to {
                let _ = done.send(Err(StoreError::Commit(e.clone())));
            }
        }
    }
}
