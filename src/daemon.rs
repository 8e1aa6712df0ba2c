//! `credwatch run`: opens the store, starts the workers, and stops them all on SIGINT/SIGTERM.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::Arc;

use crate::check::{Checker, instance_id};
use crate::config::{Config, ConfigError, MailTransport};
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
}

pub async fn run(config: Config) -> Result<(), DaemonError> {
    let shutdown = CancellationToken::new();
    let signals = shutdown_signals(shutdown.clone()).map_err(DaemonError::Signals)?;

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
