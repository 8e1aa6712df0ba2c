//! PostgreSQL's group commit of the writes nearly every check makes (rotated tokens, results).
//! A statement and a commit per check cost a round trip and a WAL flush each; a replica's
//! checks finishing at the same moment go together instead, each kind of write as one
//! statement over all their rows (see `unnested`): one round trip and one commit for the group.
//! Each caller is answered only once its statement committed. Replicas each have their own
//! writer; their rows never overlap (each is under its own lease).

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::statements::{HealthyRow, RefreshedRow, RotateRow, Update};
use super::unnested::{self, Statement};
use super::*;

/// Writes that go together at most.
const MAX_BATCH: usize = 512;
/// Groups written at once, each on a connection of its own: while one group's statement runs,
/// the next is written rather than waiting for it (their rows never overlap: a connection has
/// one check at a time). More made the groups smaller without making the sweep faster.
const WRITERS: usize = 2;
/// Scheduler turns the writer waits for more writes before it commits: a few turns cost
/// microseconds, a commit a round trip and a flush.
const LINGER_TURNS: usize = 3;

pub(super) enum Queued {
    Rotate(RotateRow, oneshot::Sender<Result<i64, StoreError>>),
    Healthy(HealthyRow, oneshot::Sender<Result<bool, StoreError>>),
    Refreshed(RefreshedRow, oneshot::Sender<Result<bool, StoreError>>),
}

/// Starts the writers on a thread of their own (with a runtime of its own, which their
/// connections belong to): on the daemon's runtime they waited behind the checks to be polled,
/// and every check waits for them. They end when the store closes (or is dropped).
pub(super) async fn start(
    url: SecretString,
    workers: &Workers,
) -> Result<mpsc::Sender<Queued>, StoreError> {
    let (queue, queued) = mpsc::channel(4096);
    let (opened, open) = oneshot::channel();
    let closing = workers.closing.clone();
    let thread = std::thread::Builder::new()
        .name("pg-writer".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(r) => r,
                Err(e) => return drop(opened.send(Err(StoreError::Commit(e.to_string())))),
            };
            runtime.block_on(async move {
                use secrecy::ExposeSecret;
                match unnested::pool(url.expose_secret(), WRITERS as u32).await {
                    Ok(pool) => {
                        let _ = opened.send(Ok(()));
                        let queued = Arc::new(tokio::sync::Mutex::new(queued));
                        let mut writers = tokio::task::JoinSet::new();
                        for _ in 0..WRITERS {
                            writers.spawn(writer(pool.clone(), queued.clone(), closing.clone()));
                        }
                        while writers.join_next().await.is_some() {}
                        pool.close().await;
                    }
                    Err(e) => drop(opened.send(Err(e))),
                }
            });
        });
    match thread {
        Ok(thread) => workers.thread(thread),
        Err(e) => {
            return Err(StoreError::Commit(format!(
                "cannot start the writer thread: {e}"
            )));
        }
    }
    match open.await {
        Ok(opened) => opened.map(|()| queue),
        Err(_) => Err(StoreError::Commit("the writer thread ended".into())),
    }
}

/// Takes the next group from the queue (one writer at a time) and writes it.
async fn writer(
    pool: PgPool,
    queued: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
    closing: tokio_util::sync::CancellationToken,
) {
    let rotate = Statement::rotate();
    let healthy = Statement::linked(&Update::healthy());
    let refreshed = Statement::linked(&Update::refreshed());
    loop {
        let mut queue = queued.lock().await;
        let Some(first) = next(&mut queue, &closing).await else {
            break;
        };
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
        drop(queue);
        let (mut rotations, mut rotated_to) = (Vec::new(), Vec::new());
        let (mut healthy_rows, mut healthy_to) = (Vec::new(), Vec::new());
        let (mut refreshed_rows, mut refreshed_to) = (Vec::new(), Vec::new());
        for q in batch {
            match q {
                Queued::Rotate(row, done) => {
                    rotations.push(row);
                    rotated_to.push(done);
                }
                Queued::Healthy(row, done) => {
                    healthy_rows.push(row);
                    healthy_to.push(done);
                }
                Queued::Refreshed(row, done) => {
                    refreshed_rows.push(row);
                    refreshed_to.push(done);
                }
            }
        }
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let e = e.to_string();
                fail(rotated_to, &e);
                fail(healthy_to, &e);
                fail(refreshed_to, &e);
                continue;
            }
        };
        if !rotations.is_empty() {
            let results = unnested::rotate(&mut conn, &rotate, &rotations).await;
            answer(rotated_to, results);
        }
        if !healthy_rows.is_empty() {
            let results = unnested::linked(&mut conn, &healthy, &healthy_rows).await;
            answer(healthy_to, results);
        }
        if !refreshed_rows.is_empty() {
            let results = unnested::linked(&mut conn, &refreshed, &refreshed_rows).await;
            answer(refreshed_to, results);
        }
    }
}

fn answer<T>(to: Vec<oneshot::Sender<Result<T, StoreError>>>, results: Vec<Result<T, StoreError>>) {
    for (done, result) in to.into_iter().zip(results) {
        let _ = done.send(result);
    }
}

fn fail<T>(to: Vec<oneshot::Sender<Result<T, StoreError>>>, e: &str) {
    for done in to {
        let _ = done.send(Err(StoreError::Commit(e.to_owned())));
    }
}
