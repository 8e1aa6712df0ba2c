//! One outbox worker for every channel. What the store holds to be sent (notices for the
//! mailer, events for each webhook endpoint) goes out the same way: claimed under a lease, so
//! replicas share the work and a crash re-sends rather than loses; one attempt per unit; a
//! failure retried with exponential backoff and jitter, until the channel's limit; the outcome
//! recorded. A channel says only how to claim, deliver and record its own kind of unit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::Lease;

/// What one attempt came to.
#[derive(Debug)]
pub enum Outcome {
    Sent,
    /// Nothing to send any more (the connection healed first): done, with why.
    Moot(String),
    /// Worth trying again (a server down, a timeout).
    RetryLater(String),
    /// Trying again cannot help (an address refused for good).
    FailedForGood(String),
}

/// What is recorded for a unit after its attempt.
#[derive(Debug)]
pub enum Recorded {
    Sent { note: Option<String> },
    Retry { error: String, at: DateTime<Utc> },
    Failed { error: String },
}

/// How retries are spaced: `first`, doubling per attempt, up to `max`, with ±20% jitter so a
/// receiver coming back is not met by every retry at once.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after the `attempts`-th failed attempt.
    pub fn after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        let base = self.first.saturating_mul(1u32 << doublings).min(self.max);
        base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
    }
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// What one attempt carries: one webhook delivery, or one e-mail (which may carry several
    /// notices).
    type Unit: Send + Sync + 'static;
    type Error: std::fmt::Display + Send;

    /// Names the channel in the log.
    fn name(&self) -> String;
    /// Claims what is due under `lease`.
    async fn claim(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<Self::Unit>, Self::Error>;
    /// One attempt. An error leaves the unit claimed: it is tried again when its lease ends.
    async fn deliver(&self, unit: &Self::Unit) -> Result<Outcome, Self::Error>;
    /// Attempts made at the unit, this one included.
    fn attempts(&self, unit: &Self::Unit) -> u32;
    /// Until when the unit may be retried; `None`: for as long as it takes.
    fn retry_until(&self, unit: &Self::Unit) -> Option<DateTime<Utc>>;
    /// Records what became of a round's units.
    async fn record(&self, done: Vec<(Self::Unit, Recorded)>) -> Result<(), Self::Error>;
    /// When the next unit is due, if any is waiting.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, Self::Error>;
    fn backoff(&self) -> Backoff;
    /// Units delivered at once.
    fn concurrency(&self) -> usize {
        1
    }
    /// The longest sleep: work queued by other replicas wakes nothing here.
    fn max_sleep(&self) -> Duration;
    /// After each round (the mailer ends its SMTP session).
    async fn end_round(&self) {}
}

/// How long stopping waits for the units due now.
const FLUSH: Duration = Duration::from_secs(10);

pub struct Worker<C: Channel> {
    channel: Arc<C>,
    instance: String,
    /// How long a claimed unit stays ours if we die with it (`limits.lease`).
    lease: Duration,
    /// Woken when something was queued here.
    wake: Arc<Notify>,
}

impl<C: Channel> Worker<C> {
    pub fn new(channel: C, instance: String, lease: Duration, wake: Arc<Notify>) -> Self {
        Self {
            channel: Arc::new(channel),
            instance,
            lease,
            wake,
        }
    }

    /// Delivers until cancelled, then what is due at once, within a bound: the rest waits in
    /// the store.
    pub async fn run(self, cancel: CancellationToken) {
        let name = self.channel.name();
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A stop does not wait for a slow receiver: what was claimed and not delivered is
            // taken up again when its lease ends.
            let round = tokio::select! {
                _ = cancel.cancelled() => break,
                round = self.round() => round,
            };
            match round {
                Ok(n) if n > 0 && !cancel.is_cancelled() => continue,
                Ok(_) => {}
                Err(e) => tracing::error!("{name}: {e}"),
            }
            let max = self.channel.max_sleep();
            let wait = match self.channel.next_due().await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default().min(max),
                Ok(None) => max,
                Err(e) => {
                    tracing::error!("{name}: cannot read what is due: {e}");
                    self.channel.backoff().first
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        match tokio::time::timeout(FLUSH, self.round()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("{name}: {e}"),
            Err(_) => {
                tracing::warn!("{name}: stopped before everything due went out; it stays queued")
            }
        }
    }

    /// Claims what is due, delivers it, records the outcomes; answers how many were claimed.
    pub async fn round(&self) -> Result<usize, C::Error> {
        let now = Utc::now();
        let lease = Lease {
            owner: self.instance.clone(),
            until: now + TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::MAX),
        };
        let claimed = self.channel.claim(&lease, now).await;
        let units = match claimed {
            Ok(units) => units,
            Err(e) => {
                self.channel.end_round().await;
                return Err(e);
            }
        };
        let count = units.len();
        let mut pending = units.into_iter();
        let mut running = JoinSet::new();
        let mut done = Vec::with_capacity(count);
        let mut first_error = None;
        loop {
            while running.len() < self.channel.concurrency().max(1) {
                let Some(unit) = pending.next() else { break };
                let channel = self.channel.clone();
                running.spawn(async move {
                    let outcome = channel.deliver(&unit).await;
                    (unit, outcome)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let Ok((unit, outcome)) = joined else {
                continue;
            };
            match outcome {
                Ok(outcome) => done.push((self.recorded(&unit, outcome), unit)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.channel.end_round().await;
        let done = done.into_iter().map(|(r, u)| (u, r)).collect();
        self.channel.record(done).await?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// An outcome as it is recorded: a retry is spaced by the backoff, and given up when it
    /// would fall past the unit's limit.
    fn recorded(&self, unit: &C::Unit, outcome: Outcome) -> Recorded {
        let name = self.channel.name();
        match outcome {
            Outcome::Sent => Recorded::Sent { note: None },
            Outcome::Moot(why) => Recorded::Sent { note: Some(why) },
            Outcome::FailedForGood(error) => Recorded::Failed { error },
            Outcome::RetryLater(error) => {
                let attempts = self.channel.attempts(unit);
                let wait = self.channel.backoff().after(attempts);
                let at = Utc::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                match self.channel.retry_until(unit) {
                    Some(limit) if at > limit => {
                        tracing::error!(attempts, "{name}: given up: {error}");
                        Recorded::Failed { error }
                    }
                    _ => {
                        tracing::warn!(attempts,
                            retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                            "{name}: not delivered, will retry: {error}");
                        Recorded::Retry { error, at }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        };
        let first = b.after(1);
        assert!(first >= Duration::from_secs(4) && first <= Duration::from_secs(6));
        let third = b.after(3);
        assert!(third >= Duration::from_secs(16) && third <= Duration::from_secs(24));
        assert!(b.after(40) <= Duration::from_secs(4320));
        assert!(b.after(0) <= Duration::from_secs(6));
    }
}
