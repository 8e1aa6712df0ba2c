//! The accept loop. `axum::serve` has no header-read timeout, no idle timeout and no cap on
//! connections: a thousand idle sockets use up the process's file descriptors, and then the
//! health endpoints time out and checks fail to open theirs. Here a connection needs a slot
//! before it is accepted (beyond the cap, sockets wait in the kernel's queue, costing us no
//! descriptor), must send its request head within `HEADER_TIMEOUT` (which also ends a
//! keep-alive connection idle that long), and lives `MAX_AGE` at most.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A request head must arrive within this; so must the next one on a kept-alive connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// After this a connection is asked to close (after the request in progress).
const MAX_AGE: Duration = Duration::from_secs(300);
/// How long a request in progress may still run once the connection is asked to close.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` until `shutdown`, then lets requests in progress finish (within `GRACE`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: u32,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut backoff = Duration::from_millis(10);
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            // The semaphore lives as long as this loop and is never closed.
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(10);
                    a
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of descriptors or buffers: the socket stays queued, so retrying at
                    // once would spin.
                    tracing::warn!("cannot accept a connection ({e}); retrying in {backoff:?}");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(%peer, "TCP_NODELAY: {e}");
        }
        let service = TowerToHyperService::new(app.clone());
        let (builder, shutdown) = (builder.clone(), shutdown.clone());
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = pin!(builder.serve_connection(TokioIo::new(socket), service));
            let mut deadline = pin!(tokio::time::sleep(MAX_AGE));
            let mut closing = false;
            loop {
                tokio::select! {
                    done = conn.as_mut() => {
                        if let Err(e) = done {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                        break;
                    }
                    _ = shutdown.cancelled(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + GRACE);
                    }
                    _ = &mut deadline => {
                        if closing {
                            break;
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + GRACE);
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}
