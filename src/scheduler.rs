//! The sweep: on the `[schedule] sweep` cron, claim due connections provider by provider, in
//! batches, and check them within the limits. Between sweeps the task sleeps until the next
//! cron time: an idle daemon has no timer firing but that one.
//!
//! The cron is read by croner with the settings tokio-cron-scheduler uses, so the config means
//! the same; tokio-cron-scheduler itself wakes every 500 ms to look for due jobs and runs them
//! on detached tasks, which an idle daemon that must stop cleanly does not want.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::check::{CheckError, Checker, Provider, Report, ReportOutcome, alerts};
use crate::domain::Category;
use crate::store::{DueQuery, StoreError};

/// History rows one maintenance run removes at most (runs are ten minutes apart): far more than
/// a million connections refreshed every half hour write in that time, and a first run on a
/// long-kept history does not hold up the notices for long.
const HISTORY_PRUNED_PER_RUN: u64 = 500_000;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule.sweep: {0}")]
    Cron(#[from] croner::errors::CronError),
}

/// Parses the sweep cron exactly as the config check does.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    Ok(croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)?)
}

/// What one sweep did.
#[derive(Debug, Default, Clone)]
pub struct SweepStats {
    pub checked: u64,
    pub skipped: u64,
    pub failed: u64,
    pub by_category: BTreeMap<Category, u64>,
    /// From each refresh's answer to the commit of its tokens.
    pub rotation_commits: CommitTimes,
}

/// Answer-to-commit times in whole milliseconds, counted in fixed buckets: memory does not
/// grow with the number of checks (and a sweep that rotated nothing holds none).
#[derive(Debug, Clone, Default)]
pub struct CommitTimes {
    /// `counts[ms]`, `BUCKETS` of them once anything is recorded; the last holds everything at
    /// or past it.
    counts: Vec<u64>,
}

impl CommitTimes {
    const BUCKETS: usize = 10_001;

    fn record(&mut self, ms: u64) {
        self.counts.resize(Self::BUCKETS, 0);
        let last = Self::BUCKETS - 1;
        self.counts[usize::try_from(ms).unwrap_or(last).min(last)] += 1;
    }

    fn merge(&mut self, other: &CommitTimes) {
        if other.counts.is_empty() {
            return;
        }
        self.counts.resize(Self::BUCKETS, 0);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// The `q` quantile (0.5, 0.99) in ms; `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        self.counts.iter().enumerate().find_map(|(ms, n)| {
            seen += n;
            (seen >= rank).then_some(ms as u64)
        })
    }
}

impl SweepStats {
    fn add(&mut self, r: Result<Result<Report, CheckError>, tokio::task::JoinError>) {
        match r {
            Ok(Ok(report)) => match report.outcome {
                ReportOutcome::Checked {
                    category,
                    rotation_commit_ms,
                    ..
                } => {
                    self.checked += 1;
                    *self.by_category.entry(category).or_default() += 1;
                    if let Some(ms) = rotation_commit_ms {
                        self.rotation_commits.record(ms);
                    }
                }
                ReportOutcome::Skipped { .. } => self.skipped += 1,
            },
            Ok(Err(e)) => {
                tracing::error!("check failed: {e}");
                self.failed += 1;
            }
            Err(e) => {
                tracing::error!("check task failed: {e}");
                self.failed += 1;
            }
        }
    }

    fn merge(&mut self, other: SweepStats) {
        self.checked += other.checked;
        self.skipped += other.skipped;
        self.failed += other.failed;
        for (c, n) in other.by_category {
            *self.by_category.entry(c).or_default() += n;
        }
        self.rotation_commits.merge(&other.rotation_commits);
    }
}

/// Runs sweeps until `shutdown`: one at start (after spreading what downtime left overdue),
/// then one per cron time. A sweep that overruns its period makes the next one start later,
/// never two at once.
pub async fn run(checker: Arc<Checker>, shutdown: CancellationToken) -> Result<(), ScheduleError> {
    let cron = parse_cron(&checker.schedule().sweep)?;
    let schedule = checker.schedule().clone();
    match checker
        .store()
        .spread_overdue(Utc::now(), schedule.catch_up, schedule.batch_size)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            overdue = n,
            window = %humantime::format_duration(schedule.catch_up),
            "connections left overdue by downtime are spread over the catch-up window"
        ),
        Err(e) => tracing::error!("cannot spread overdue connections: {e}"),
    }
    match checker.store().retry_set_aside(Utc::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            connections = n,
            "connections set aside for unreadable tokens are tried again"
        ),
        Err(e) => tracing::error!("cannot retry the connections set aside: {e}"),
    }
    // The first sweep tries every held provider at once: the operator may have fixed the
    // client and restarted for exactly that.
    let mut first = true;
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        sweep(&checker, &shutdown, first).await;
        first = false;
        let next = match cron.find_next_occurrence(&Utc::now(), false) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("schedule.sweep has no next time ({e}); no further sweeps");
                shutdown.cancelled().await;
                break;
            }
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    Ok(())
}

/// One sweep over every provider; a provider held back by an alert gets one trial check when
/// its alert is due.
pub async fn sweep(
    checker: &Arc<Checker>,
    shutdown: &CancellationToken,
    try_held_now: bool,
) -> SweepStats {
    let started = tokio::time::Instant::now();
    if checker.store().writes_failing().is_some() {
        // Tells the store when writes work again, even if nothing else is due to write.
        if let Err(e) = checker.store().probe_writes(Utc::now()).await {
            tracing::debug!("writes still fail: {e}");
        }
    }
    let alerts = match checker.refresh_holds().await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("sweep skipped: cannot read the store: {e}");
            return SweepStats::default();
        }
    };
    let now = Utc::now();
    let mut providers = JoinSet::new();
    for p in checker.providers() {
        let limit = match alerts.iter().find(|a| &a.provider == p.id()) {
            None => None,
            Some(a) if try_held_now || a.next_attempt_at <= now => Some(1),
            Some(_) => continue,
        };
        let (checker, p, shutdown) = (checker.clone(), p.clone(), shutdown.clone());
        providers.spawn(async move {
            let stats = sweep_provider(checker.clone(), p.clone(), limit, shutdown).await;
            if let Err(e) = alerts::review(&checker, p.id(), &stats.by_category).await {
                tracing::error!(provider = %p.id(), "cannot record provider-wide trouble: {e}");
            }
            stats
        });
    }
    let mut stats = SweepStats::default();
    while let Some(r) = providers.join_next().await {
        match r {
            Ok(s) => stats.merge(s),
            Err(e) => tracing::error!("sweep task failed: {e}"),
        }
    }
    queue_notices(checker).await;
    let elapsed = started.elapsed();
    // Checks that all failed to store their results are no sweep to be glad of.
    let stored = stats.failed == 0 || stats.checked > 0;
    checker.metrics().sweep(elapsed.as_secs_f64(), stored);
    if stats.checked + stats.skipped + stats.failed == 0 {
        tracing::debug!(
            elapsed_ms = elapsed.as_millis() as u64,
            "sweep finished: nothing due"
        );
    } else {
        let categories: Vec<String> = stats
            .by_category
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        tracing::info!(
            checked = stats.checked,
            skipped = stats.skipped,
            failed = stats.failed,
            elapsed_ms = elapsed.as_millis() as u64,
            "sweep finished: {}",
            categories.join(", ")
        );
    }
    stats
}

/// Reminders and expiry warnings that fell due, then a nudge for the mailer (which also picks
/// up what other replicas queued).
async fn queue_notices(checker: &Checker) {
    let notices = checker.notices();
    let now = Utc::now();
    if let Err(e) = checker
        .store()
        .queue_reminders(now, &notices.reminders)
        .await
    {
        tracing::error!("cannot queue reminders: {e}");
    }
    if let Err(e) = checker
        .store()
        .queue_expiring(now, notices.expiring_soon)
        .await
    {
        tracing::error!("cannot queue expiry warnings: {e}");
    }
    if let Some(retention) = checker.retention_due() {
        let before = |kept: std::time::Duration| {
            chrono::TimeDelta::from_std(kept)
                .ok()
                .and_then(|r| now.checked_sub_signed(r))
        };
        if let Some(before) = before(retention)
            && let Err(e) = checker.store().prune_events(before).await
        {
            tracing::error!("cannot remove old events: {e}");
        }
        if let Some(before) = before(checker.schedule().history_retention) {
            match checker
                .store()
                .prune_history(before, HISTORY_PRUNED_PER_RUN)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "removed old check history"),
                Err(e) => tracing::error!("cannot remove old check history: {e}"),
            }
        }
    }
    checker.outbox_signal().notify_one();
}

/// Claims a provider's due connections a batch at a time, keeping at most its concurrency in
/// flight and at most one batch and a half waiting: memory stays flat however many are due.
/// The next batch is claimed while the checks go on (a claim of thousands of rows takes tens of
/// milliseconds on PostgreSQL, in which the checks in flight would otherwise run out).
async fn sweep_provider(
    checker: Arc<Checker>,
    provider: Arc<Provider>,
    limit: Option<u32>,
    shutdown: CancellationToken,
) -> SweepStats {
    let batch = limit.map_or(checker.batch_size(&provider), |l| {
        l.min(checker.batch_size(&provider))
    });
    let concurrency = provider.config.max_concurrent as usize;
    let claim_below = concurrency.max(batch as usize / 2);
    let mut stats = SweepStats::default();
    let mut queue = VecDeque::new();
    let mut in_flight = JoinSet::new();
    let mut claiming: Option<ClaimFuture> = None;
    let mut claimed_total = 0u32;
    let mut exhausted = false;
    loop {
        if claiming.is_none() && !exhausted && !shutdown.is_cancelled() && queue.len() < claim_below
        {
            let (checker, provider) = (checker.clone(), provider.clone());
            claiming = Some(Box::pin(
                async move { claim(&checker, &provider, batch).await },
            ));
        }
        while in_flight.len() < concurrency
            && let Some(claimed) = queue.pop_front()
        {
            let checker = checker.clone();
            let shutdown = shutdown.clone();
            in_flight.spawn(async move { checker.check(claimed, &shutdown).await });
        }
        if in_flight.is_empty() && claiming.is_none() {
            if (exhausted || shutdown.is_cancelled()) && queue.is_empty() {
                break;
            }
            continue;
        }
        tokio::select! {
            claimed = async {
                match claiming.as_mut() {
                    Some(claim) => claim.await,
                    None => std::future::pending().await,
                }
            }, if claiming.is_some() => {
                claiming = None;
                match claimed {
                    Ok(claimed) => {
                        // Or-ed: a skip seen while this claim ran stops the sweep too.
                        exhausted |= claimed.len() < batch as usize;
                        claimed_total = claimed_total.saturating_add(claimed.len() as u32);
                        exhausted |= limit.is_some_and(|l| claimed_total >= l);
                        queue.extend(claimed);
                    }
                    // A database outage is logged once, when it starts, by the store.
                    Err(e) if e.is_outage() => {
                        tracing::debug!(provider = %provider.id(), "cannot claim due connections: {e}");
                        exhausted = true;
                    }
                    Err(e) => {
                        tracing::error!(provider = %provider.id(), "cannot claim due connections: {e}");
                        exhausted = true;
                    }
                }
            }
            Some(r) = in_flight.join_next(), if !in_flight.is_empty() => {
                // A claim given back unused is due again at once: claiming on would loop.
                if matches!(&r, Ok(Ok(report)) if matches!(report.outcome, ReportOutcome::Skipped { .. }))
                {
                    exhausted = true;
                }
                stats.add(r);
            }
        }
    }
    stats
}

type ClaimFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<crate::store::Claimed>, StoreError>> + Send>,
>;

async fn claim(
    checker: &Checker,
    provider: &Provider,
    limit: u32,
) -> Result<Vec<crate::store::Claimed>, StoreError> {
    let now = Utc::now();
    checker
        .store()
        .claim_due(
            DueQuery {
                provider: provider.id(),
                now,
                limit,
                operator: checker.operator(),
            },
            &checker.lease(now),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times_give_their_quantiles_in_fixed_memory() {
        let mut t = CommitTimes::default();
        assert_eq!(t.quantile(0.5), None);
        for ms in (1..=100).chain([u64::MAX]) {
            t.record(ms);
        }
        assert_eq!(t.quantile(0.5), Some(51));
        assert_eq!(t.quantile(0.99), Some(100));
        assert_eq!(t.quantile(1.0), Some(10_000));
        let mut other = CommitTimes::default();
        other.merge(&t);
        assert_eq!(other.quantile(0.5), Some(51));
    }
}
