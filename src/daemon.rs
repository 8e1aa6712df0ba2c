//! `credwatch run`: opens the store, starts the workers, and stops them all on SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::Arc;

use crate::check::{Checker, instance_id};
use crate::config::{Config, ConfigError, DatabaseUrl, MailTransport};
use crate::mailer::Mailer;
use crate::scheduler;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Check(#[from] crate::check::CheckError),
    #[error("{0}")]
    Schedule(#[from] crate::scheduler::ScheduleError),
    #[error("{0}")]
    Mailer(#[from] crate::mailer::MailerError),
    #[error("{0}")]
    Http(#[from] crate::http::HttpError),
    #[error(
        "another credwatch daemon is already running on {0} (SQLite allows one daemon per \
         database file; use a postgres:// database for several replicas)"
    )]
    AlreadyRunning(String),
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

pub async fn run(config: Config) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    let signals = shutdown_signals(shutdown.clone()).map_err(DaemonError::Signals)?;

    // Held until we return: SQLite has no leases across hosts, so one daemon per file.
    let _lock = match &config.database.url {
        DatabaseUrl::Sqlite(path) => Some(lock_database(path)?),
        DatabaseUrl::Postgres(_) => None,
    };
    let store = store::open(&config.database, config.keyring.clone()).await?;
    let instance = instance_id("daemon");
    let checker = Arc::new(Checker::new(&config, store.clone(), instance.clone())?);
    let mailer = Mailer::new(&config, store.clone(), instance, checker.metrics().clone())?;
    let (listener, app) = crate::http::bind(&config, checker.clone()).await?;
    // Refused here rather than in the sweep task, so a bad cron stops the start, not the sweeps.
    scheduler::parse_cron(&config.schedule.sweep)?;
    let counts = store.counts().await?;
    let mail = match &config.mail.transport {
        MailTransport::File(dir) => format!("files in {}", dir.display()),
        MailTransport::Smtp(smtp) => format!("smtp://{}:{}", smtp.host, smtp.port),
    };
    tracing::info!(
        config = %config.path.display(),
        providers = config.providers.len(),
        connections = counts.connections,
        healthy = counts.healthy,
        degraded = counts.degraded,
        broken = counts.broken,
        pipelines = counts.pipelines,
        paused = counts.paused,
        mail = %mail,
        http = %config.http.listen,
        sweep = %config.schedule.sweep,
        instance = checker.instance(),
        "credwatch started"
    );

    // Every worker is spawned on this tracker and watches `shutdown`; none is fire-and-forget.
    let tasks = TaskTracker::new();
    tasks.spawn(mailer.run(checker.outbox_signal(), shutdown.clone()));
    tasks.spawn(crate::http::serve(listener, app, shutdown.clone()));
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = scheduler::run(checker, shutdown.clone()).await {
                tracing::error!("the scheduler stopped: {e}");
                shutdown.cancel();
            }
        });
    }
    tasks.close();
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    tasks.wait().await;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

/// An exclusive lock on `<database>.lock`, released by the kernel when the process ends, so a
/// crashed daemon never leaves a stale lock behind.
fn lock_database(db: &std::path::Path) -> Result<std::fs::File, DaemonError> {
    let path = std::path::PathBuf::from(format!("{}.lock", db.display()));
    let lock_error = |source| DaemonError::Lock {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(lock_error)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(DaemonError::AlreadyRunning(db.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
    }
}

/// Cancels `shutdown` on the first SIGINT or SIGTERM.
fn shutdown_signals(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    }))
}
