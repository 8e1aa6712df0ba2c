//! Applying what a check found: the verdict becomes a transition and a next time, the store
//! records it (with the rotated tokens, when the refresh was the whole check, in the same
//! write), and the outcome is logged and reported.

use super::*;
use crate::store::Applied;
use crate::tokens::TokenSet;

impl Checker {
    pub(super) async fn apply(
        &self,
        provider: &Provider,
        claimed: &Claimed,
        mut ran: Ran,
        latency_ms: u64,
    ) -> Result<Report, CheckError> {
        if let Some(tokens) = ran.pending.take() {
            // Healthy and still healthy, the common case: the new tokens and the result in one
            // write. Otherwise (or if the connection changed meanwhile) the tokens go first,
            // alone, as when there is a probe.
            if claimed.connection.status == ConnectionStatus::Healthy {
                let kept = ran.expires_at;
                ran.expires_at = tokens.expires_at;
                let result = self.result(claimed, &ran, ran.generation + 1, latency_ms);
                if result.transition == Transition::Healthy {
                    let rotation = Rotation {
                        expected_generation: ran.generation,
                        tokens: &tokens,
                        now: result.finished_at,
                    };
                    match self
                        .store
                        .finish_refreshed(claimed, rotation, &result)
                        .await
                    {
                        Ok(true) => {
                            ran.committed();
                            let applied = Applied::unchanged(ConnectionStatus::Healthy);
                            return self.report(provider, claimed, &ran, result, applied).await;
                        }
                        // Not as claimed, or the write failed: the tokens go alone, and
                        // are retried there until stored.
                        Ok(false) => {}
                        Err(e) => tracing::warn!(
                            connection = %claimed.connection.id,
                            "storing refreshed tokens with the check's result failed: {e}"
                        ),
                    }
                }
                ran.expires_at = kept;
            }
            let status = ran.verdict.http_status;
            self.persist_rotation(claimed, &mut ran, &tokens, status)
                .await?;
        }
        let result = self.result(claimed, &ran, ran.generation, latency_ms);
        let applied = self.store.finish_check(claimed, &result).await?;
        self.report(provider, claimed, &ran, result, applied).await
    }

    /// Stores rotated tokens at once. `false` when they were refused (someone else stored
    /// other tokens meanwhile), and the verdict then says so.
    pub(super) async fn persist_rotation(
        &self,
        claimed: &Claimed,
        ran: &mut Ran,
        tokens: &TokenSet,
        http_status: Option<u16>,
    ) -> Result<bool, CheckError> {
        match self.store_tokens(claimed, ran.generation, tokens).await {
            Ok(g) => {
                ran.committed();
                ran.generation = g;
                ran.expires_at = tokens.expires_at;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(
                    connection = %claimed.connection.id,
                    "refreshed, but the new tokens were not stored: {e}"
                );
                let detail = format!("refreshed, but the new tokens were not stored: {e}");
                ran.verdict = Classification::new(Category::Transient, detail, http_status);
                Ok(false)
            }
        }
    }

    /// New tokens in hand are the ones the provider now considers live, and a rotating
    /// provider has already killed the stored ones: they are never dropped while they can
    /// still be stored. A failed write is retried (the database may be back in a moment),
    /// and tokens whose lease was lost meanwhile are stored all the same while the stored
    /// tokens are still the ones they replace. They are given up only when someone else
    /// stored other tokens, the connection is gone, or they cannot be sealed.
    async fn store_tokens(
        &self,
        claimed: &Claimed,
        generation: i64,
        tokens: &TokenSet,
    ) -> Result<i64, StoreError> {
        const FIRST_WAIT: Duration = Duration::from_millis(100);
        const MAX_WAIT: Duration = Duration::from_secs(5);
        let id = &claimed.connection.id;
        let rotation = || Rotation {
            expected_generation: generation,
            tokens,
            now: Utc::now(),
        };
        let mut wait = FIRST_WAIT;
        // Counted while failing (a stop waits for these); uncounted however the loop ends.
        let mut failing: Option<Unstored> = None;
        loop {
            let stored = match self.store.save_rotation(claimed, rotation()).await {
                Err(StoreError::LeaseLost(_)) => {
                    let rescued = self.store.rescue_rotation(claimed, rotation()).await;
                    if rescued.is_ok() {
                        tracing::warn!(
                            connection = %id,
                            "refreshed tokens were stored after this worker's lease ran out; \
                             the connection is checked again at once"
                        );
                    }
                    rescued
                }
                other => other,
            };
            match stored {
                Ok(generation) => {
                    if failing.is_some() {
                        tracing::info!(connection = %id, "the refreshed tokens are stored now");
                    }
                    return Ok(generation);
                }
                Err(
                    e @ (StoreError::TokensChanged(_)
                    | StoreError::ConnectionNotFound(_)
                    | StoreError::Crypto(_)),
                ) => return Err(e),
                Err(e) => {
                    if failing.is_none() {
                        tracing::error!(
                            connection = %id,
                            "refreshed, but storing the new tokens failed: {e}; the provider \
                             may already have retired the stored ones, so they are kept and \
                             retried until they are stored"
                        );
                        failing = Some(Unstored::count(&self.unstored));
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_WAIT);
                }
            }
        }
    }

    /// The verdict as the store records it: a transition and the next time to check.
    fn result(
        &self,
        claimed: &Claimed,
        ran: &Ran,
        generation: i64,
        latency_ms: u64,
    ) -> CheckResult {
        let Ran {
            phase,
            verdict,
            expires_at,
            refresh_uncertain,
            ..
        } = ran;
        let (phase, expires_at, refresh_uncertain) = (*phase, *expires_at, *refresh_uncertain);
        let conn = &claimed.connection;
        let now = Utc::now();
        let category = verdict.category;
        let (transition, next_check_at) = if let Some(until) = ran.hold_until {
            (Transition::Unchanged, until)
        } else {
            let mut rng = rand::thread_rng();
            match category.consequence() {
                Consequence::Healthy => (
                    Transition::Healthy,
                    schedule::after_success(now, expires_at, self.schedule.check_interval),
                ),
                Consequence::Degraded if conn.status == ConnectionStatus::Broken => (
                    Transition::Degraded,
                    schedule::after_broken(now, self.schedule.broken_recheck, &mut rng),
                ),
                Consequence::Degraded => (
                    Transition::Degraded,
                    schedule::after_failure(
                        now,
                        conn.consecutive_failures.saturating_add(1),
                        self.schedule.backoff_max,
                        verdict.retry_after,
                        &mut rng,
                    ),
                ),
                Consequence::Broken => (
                    Transition::Broken,
                    schedule::after_broken(now, self.schedule.broken_recheck, &mut rng),
                ),
                // Still due: once the operator fixes the client, the connection is checked.
                Consequence::Operator => (Transition::Unchanged, conn.next_check_at),
            }
        };
        let detail = ran.secrets.redact(verdict.detail.clone());
        CheckResult {
            started_at: claimed.started_at,
            generation,
            phase,
            category,
            http_status: verdict.http_status,
            latency_ms,
            detail: detail.clone(),
            transition,
            next_check_at,
            finished_at: now,
            notify_at: now + delta(self.notices.digest_window),
            first_reminder_at: self.notices.reminders.first().map(|r| now + delta(*r)),
            refresh_uncertain,
        }
    }

    /// What follows a stored result: wake the mailer, log, alert, report.
    async fn report(
        &self,
        provider: &Provider,
        claimed: &Claimed,
        ran: &Ran,
        result: CheckResult,
        applied: Applied,
    ) -> Result<Report, CheckError> {
        let conn = &claimed.connection;
        let CheckResult {
            category,
            phase,
            http_status,
            latency_ms,
            next_check_at,
            finished_at: now,
            ..
        } = result;
        self.metrics
            .check(provider.id(), category, latency_ms as f64 / 1000.0);
        if let Some(commit) = ran.commit {
            self.metrics.rotation_commit(commit.as_secs_f64());
        }
        if applied.incident_opened.is_some() || applied.incident_closed.is_some() {
            self.outbox.notify_one();
        }
        report::log(&conn.id, provider.id(), &result, &applied);
        alerts::client_refused(self, provider, category, &result.detail, now).await?;
        if category == Category::RotationLost && applied.incident_opened.is_some() {
            alerts::rotation_lost(self, provider, conn, &result.detail, now).await?;
        }
        Ok(Report {
            connection: conn.id.clone(),
            name: conn.name.clone(),
            provider: conn.provider.clone(),
            outcome: ReportOutcome::Checked {
                category,
                phase,
                detail: result.detail,
                http_status,
                latency_ms,
                before: applied.before,
                after: applied.after,
                stale: applied.stale,
                next_check_at: if applied.stale { now } else { next_check_at },
                paused: applied.paused,
                resumed: applied.resumed,
                rotation_commit_ms: ran
                    .commit
                    .map(|c| u64::try_from(c.as_micros() / 1000).unwrap_or(u64::MAX)),
            },
        })
    }
}

/// One refreshed token set being retried into the store, counted while it lives.
struct Unstored(Arc<std::sync::atomic::AtomicUsize>);

impl Unstored {
    fn count(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for Unstored {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
