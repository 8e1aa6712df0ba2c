//! `credwatch run`: opens the store, starts the workers, reloads the config on SIGHUP, and stops
//! them all on SIGINT/SIGTERM, telling systemd about each step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::check::{Checker, instance_id};
use crate::config::{Config, ConfigError, DatabaseUrl, MailTransport};
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::scheduler;
use crate::store::{self, Store, StoreError};
use crate::systemd::Notifier;

/// Beyond two request timeouts: time to write results and send the notices that are due.
const STOP_MARGIN: Duration = Duration::from_secs(15);
/// How much longer a stop waits for refreshed tokens still being retried into the database
/// (the unit's TimeoutStopSec leaves room for it).
const UNSTORED_WAIT: Duration = Duration::from_secs(60);
/// How often STATUS= is refreshed under systemd (more often when the watchdog needs pings).
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// How long READY=1 waits for the status line it carries (the store has just answered).
const FIRST_STATUS_WAIT: Duration = Duration::from_secs(5);

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
    #[error("{0}")]
    Webhooks(#[from] crate::webhooks::WebhookError),
    #[error(
        "another credwatch daemon is already running on {0} (SQLite allows one daemon per \
         database file; use a postgres:// database for several replicas)"
    )]
    AlreadyRunning(String),
    #[error("{0}")]
    DevProvider(#[from] crate::devprovider::DevProviderError),
    #[error("the scheduler stopped; see the error above")]
    SchedulerStopped,
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

pub async fn run(config: Config) -> Result<(), DaemonError> {
    let notifier = Arc::new(Notifier::from_env());
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let shutdown = CancellationToken::new();

    // Held until we return: SQLite has no leases across hosts, so one daemon per file.
    let _lock = match &config.database.url {
        DatabaseUrl::Sqlite(path) => Some(lock_database(path)?),
        DatabaseUrl::Postgres(_) => None,
    };
    let store = open_store(&config, &notifier).await?;
    let instance = instance_id("daemon");
    let metrics = Arc::new(Metrics::new());
    let workers = Workers::build(&config, &store, &instance, &metrics)?;
    let (listener, app, http) = crate::http::bind(&config, workers.checker.clone()).await?;
    let api_listener = crate::api::bind(&config).await?;
    let dev_provider = crate::devprovider::bind(&config).await?;
    let api = crate::api::ApiState::new(
        Arc::new(config.clone()),
        workers.checker.clone(),
        shutdown.clone(),
    );
    log_started(&config, &store, &instance).await?;

    // Every task is spawned on a tracker and watches a cancellation token; none is
    // fire-and-forget. The HTTP server lives as long as the process; the workers are replaced
    // on each reload.
    let tasks = TaskTracker::new();
    tasks.spawn(crate::http::serve(
        listener,
        app,
        config.http.max_connections,
        shutdown.clone(),
    ));
    tasks.spawn(crate::http::serve(
        api_listener,
        crate::api::router(api.clone()),
        config.api.max_connections,
        shutdown.clone(),
    ));
    if let Some((listener, router)) = dev_provider {
        tasks.spawn(crate::http::serve(listener, router, 64, shutdown.clone()));
    }
    let alive = Arc::new(AtomicBool::new(false));
    let failed = CancellationToken::new();
    let mut running = workers.start(&shutdown, &alive, &failed);
    if notifier.enabled() {
        notifier.ready(&status_line(&*store, FIRST_STATUS_WAIT).await);
        tasks.spawn(report_to_systemd(
            notifier.clone(),
            store.clone(),
            alive.clone(),
            shutdown.clone(),
        ));
    }
    let mut config = config;
    loop {
        tokio::select! {
            _ = signals.term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = signals.int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = failed.cancelled() => break,
            _ = signals.hup.recv() => {
                tracing::info!("SIGHUP received: reloading {}", config.path.display());
                notifier.notify("RELOADING=1");
                match reload(&config, &store, &instance, &metrics) {
                    Ok((new_config, workers)) => {
                        running.stop(&config).await;
                        http.set_checker(workers.checker.clone());
                        http.set_config(Arc::new(new_config.clone()));
                        api.set(Arc::new(new_config.clone()), workers.checker.clone());
                        running = workers.start(&shutdown, &alive, &failed);
                        config = new_config;
                        tracing::info!("config reloaded");
                    }
                    Err(e) => tracing::error!("the new config is refused, the running one is kept: {e}"),
                }
                notifier.notify("READY=1");
            }
        }
    }
    notifier.notify("STOPPING=1");
    tracing::info!("shutting down");
    running.stop(&config).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    store.close().await;
    if failed.is_cancelled() {
        return Err(DaemonError::SchedulerStopped);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store, which brings its schema up to date first. On a large database an upgrade
/// can take longer than systemd waits for a start (90 s by default), which would kill it and
/// start it again, into the same upgrade: while it runs, systemd is asked to wait on and told
/// why.
async fn open_store(config: &Config, notifier: &Notifier) -> Result<Arc<dyn Store>, DaemonError> {
    const EVERY: Duration = Duration::from_secs(5);
    const WHY: &str = "opening the database (a schema upgrade can take minutes)";
    let opening = store::open(&config.database, config.keyring.clone());
    tokio::pin!(opening);
    let mut waited = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    loop {
        tokio::select! {
            opened = &mut opening => return Ok(opened?),
            _ = waited.tick() => {
                tracing::info!("still {WHY}");
                notifier.notify(&format!("EXTEND_TIMEOUT_USEC={}", 6 * EVERY.as_micros()));
                notifier.status(WHY);
            }
        }
    }
}

/// What a config generation runs: the checks (with their scheduler), the mailer and the
/// webhook deliveries.
struct Workers {
    checker: Arc<Checker>,
    mailer: Mailer,
    webhooks: crate::webhooks::Webhooks,
}

impl Workers {
    /// Builds everything the config describes, or refuses it whole.
    fn build(
        config: &Config,
        store: &Arc<dyn Store>,
        instance: &str,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, DaemonError> {
        // Refused here rather than in the sweep task, so a bad cron stops the start (or the
        // reload), not the sweeps.
        scheduler::parse_cron(&config.schedule.sweep)?;
        let checker = Arc::new(Checker::with_metrics(
            config,
            store.clone(),
            instance.to_owned(),
            metrics.clone(),
        )?);
        let mailer = Mailer::new(config, store.clone(), instance.to_owned(), metrics.clone())?;
        let webhooks = crate::webhooks::Webhooks::new(
            config,
            store.clone(),
            instance.to_owned(),
            metrics.clone(),
            checker.outbox_signal(),
        )?;
        Ok(Self {
            checker,
            mailer,
            webhooks,
        })
    }

    fn start(
        self,
        shutdown: &CancellationToken,
        alive: &Arc<AtomicBool>,
        failed: &CancellationToken,
    ) -> Running {
        let cancel = shutdown.child_token();
        let tasks = TaskTracker::new();
        tasks.spawn(
            self.mailer
                .run(self.checker.outbox_signal(), cancel.clone()),
        );
        tasks.spawn(self.webhooks.run(cancel.clone()));
        let (alive, failed, stop) = (alive.clone(), failed.clone(), cancel.clone());
        let checker = self.checker;
        let unstored = checker.unstored();
        tasks.spawn(async move {
            alive.store(true, Ordering::Relaxed);
            let result = scheduler::run(checker, stop.clone()).await;
            alive.store(false, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::error!("the scheduler stopped: {e}");
                failed.cancel();
            }
        });
        tasks.close();
        Running {
            cancel,
            tasks,
            unstored,
        }
    }
}

struct Running {
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// Refreshed token sets being retried until stored (see `Checker::unstored`).
    unstored: Arc<std::sync::atomic::AtomicUsize>,
}

impl Running {
    /// Stops claiming, lets checks in flight finish (each is bounded by two request timeouts)
    /// and gives back the ones not started, sends what is due, and waits, within a grace period.
    async fn stop(self, config: &Config) {
        self.cancel.cancel();
        let grace = config.limits.request_timeout * 2 + STOP_MARGIN;
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return;
        }
        let unstored = self.unstored.load(Ordering::Relaxed);
        if unstored == 0 {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "workers still busy after the grace period; their claims expire with their leases"
            );
            return;
        }
        // Tokens the provider already rotated exist nowhere else: worth the stop's whole time.
        tracing::error!(
            unstored,
            "refreshed tokens are not stored yet (the database fails); the stop waits for them \
             up to {}",
            humantime::format_duration(UNSTORED_WAIT)
        );
        if tokio::time::timeout(UNSTORED_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!(
                unstored = self.unstored.load(Ordering::Relaxed),
                "stopping with refreshed tokens unstored: the provider has retired the stored \
                 ones, so these connections will most likely need reauthorizing"
            );
        }
    }
}

/// Reads the config file again; the database, the key and the HTTP listener stay as they were
/// (they need a restart), everything else is rebuilt.
fn reload(
    current: &Config,
    store: &Arc<dyn Store>,
    instance: &str,
    metrics: &Arc<Metrics>,
) -> Result<(Config, Workers), DaemonError> {
    let new = Config::load(&current.path)?;
    let fixed = [
        ("database", !current.database.url.same_as(&new.database.url)),
        (
            "encryption",
            current.keyring.current_id() != new.keyring.current_id(),
        ),
        (
            "http",
            current.http.listen != new.http.listen
                || current.http.public_base_url != new.http.public_base_url
                || current.http.metrics != new.http.metrics,
        ),
        (
            "api",
            current.api.listen != new.api.listen
                || current.api.max_body_bytes != new.api.max_body_bytes,
        ),
        ("log", current.log.level != new.log.level),
    ];
    for (section, changed) in fixed {
        if changed {
            tracing::warn!("[{section}] changed: that takes a restart; the running value is kept");
        }
    }
    let workers = Workers::build(&new, store, instance, metrics)?;
    Ok((new, workers))
}

async fn log_started(
    config: &Config,
    store: &Arc<dyn Store>,
    instance: &str,
) -> Result<(), DaemonError> {
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
        api = %config.api.listen,
        sweep = %config.schedule.sweep,
        instance,
        "credwatch started"
    );
    Ok(())
}

/// The service's one status line: the counts, or why there are none. `wait` bounds the read.
async fn status_line(store: &dyn Store, wait: Duration) -> String {
    if let Some(failing) = store.writes_failing() {
        return format!("{failing}; no checks are running");
    }
    match tokio::time::timeout(wait, store.counts()).await {
        Ok(Ok(c)) => format!(
            "{} connections: {} healthy, {} degraded, {} broken{}; {} of {} pipelines paused",
            c.connections,
            c.healthy,
            c.degraded,
            c.broken,
            match c.set_aside {
                0 => String::new(),
                n => format!(", {n} set aside (unreadable tokens)"),
            },
            c.paused,
            c.pipelines
        ),
        Ok(Err(e)) => format!("cannot read the store: {e}"),
        Err(_) => "cannot read the store: the database does not answer".to_owned(),
    }
}

/// Under systemd only: STATUS= with the counts, and WATCHDOG=1 while the scheduler runs.
async fn report_to_systemd(
    notifier: Arc<Notifier>,
    store: Arc<dyn Store>,
    alive: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let every = notifier
        .watchdog_interval()
        .unwrap_or(STATUS_EVERY)
        .min(STATUS_EVERY);
    // The first status went out with READY=1.
    loop {
        if alive.load(Ordering::Relaxed) {
            notifier.notify("WATCHDOG=1");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        notifier.status(&status_line(&*store, every).await);
    }
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

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}
