//! Handing out access tokens: credwatch is the one refresher of every grant it keeps (with a
//! rotating refresh token, any second refresher would revoke the grant), so the platform asks
//! here for a token that stays valid long enough.
//!
//! A fresh stored token is a read and a decrypt. Otherwise the connection is checked now through
//! the scheduler's own leased path: one check per connection however many callers ask at once,
//! in this process (a per-connection lock) and across replicas (the lease); the others wait for
//! it and take the tokens it stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::check::{CheckError, Checker, Report, ReportOutcome};
use crate::domain::{Category, ConnectionId, ConnectionStatus};
use crate::store::{ClaimOutcome, Handout, StoreError};

/// A token handed out.
#[derive(Debug)]
pub struct Handed {
    pub access_token: SecretString,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    /// Whether this request waited for a refresh (its own or another caller's).
    pub refreshed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("connection {id} is broken ({reason}) since {since}")]
    Broken {
        id: ConnectionId,
        category: Option<Category>,
        reason: String,
        since: DateTime<Utc>,
    },
    /// No token valid long enough, and no definite answer why: try again later.
    #[error("no access token valid long enough: {why}")]
    Unavailable { why: String, retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// How a finished check is shared by failure reports that arrive while it runs or soon after.
#[derive(Debug, Clone)]
pub struct SharedCheck {
    pub report: Report,
    pub at: DateTime<Utc>,
    /// This caller joined a check another caller started.
    pub shared: bool,
}

/// Reports within this window of a check's end share its verdict: a pipeline retrying in a
/// loop cannot make credwatch call the provider more often than this.
pub const REPORT_WINDOW: Duration = Duration::from_secs(10);
/// Recently finished report checks kept at most (the oldest go first).
const RECENT_REPORTS: usize = 10_000;

#[derive(Default)]
pub struct Custody {
    /// One check at a time per connection in this process; entries go with their last user.
    flights: Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    /// The last check a failure report started, per connection.
    reported: Mutex<HashMap<ConnectionId, (Instant, SharedCheck)>>,
}

/// The lock of one connection's flight, removed from the map when its last holder leaves.
struct Flight<'a> {
    custody: &'a Custody,
    id: ConnectionId,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = self
            .custody
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Nobody else is waiting.
        if Arc::strong_count(&self.lock) == 2 {
            flights.remove(&self.id);
        }
    }
}

impl Custody {
    pub fn new() -> Self {
        Self::default()
    }

    fn flight(&self, id: &ConnectionId) -> Flight<'_> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        let lock = flights.entry(id.clone()).or_default().clone();
        Flight {
            custody: self,
            id: id.clone(),
            lock,
        }
    }

    /// An access token of `id` valid for at least `min_valid`, refreshing it first when the
    /// stored one is not; gives up at `deadline`.
    pub async fn access_token(
        &self,
        checker: &Checker,
        id: &ConnectionId,
        min_valid: Duration,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Handed, TokenError> {
        let store = checker.store().clone();
        let first = store.handout(id).await?;
        if let Some(handed) = usable(&first, min_valid, false)? {
            return Ok(handed);
        }
        let seen = first.token_generation;
        let flight = self.flight(id);
        let Ok(_turn) = tokio::time::timeout_at(deadline, flight.lock.lock()).await else {
            return Err(waited_too_long(&first));
        };
        // Whoever held the turn before us may have refreshed it already.
        let current = store.handout(id).await?;
        if let Some(handed) = served(&current, seen, min_valid)? {
            return Ok(handed);
        }
        let started = Utc::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let now = Utc::now();
            match store.claim(id, &checker.lease(now), now).await? {
                ClaimOutcome::Claimed(claimed) => {
                    let report = checker.check(*claimed, cancel).await?;
                    let after = store.handout(id).await?;
                    return served(&after, seen, min_valid)?
                        .ok_or_else(|| unavailable(&after, Some(&report)));
                }
                // Another worker (the sweep, or another replica) checks it now: its result is
                // ours once stored.
                ClaimOutcome::Busy { .. } => {
                    if Instant::now() + pause >= deadline {
                        return Err(waited_too_long(&current));
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(waited_too_long(&current)),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_millis(500));
                    let now = store.handout(id).await?;
                    if let Some(handed) = served(&now, seen, min_valid)? {
                        return Ok(handed);
                    }
                    if now.last_check_at.is_some_and(|at| at >= started) {
                        // That check ended without a token good enough: its verdict stands.
                        return Err(unavailable(&now, None));
                    }
                }
            }
        }
    }

    /// A pipeline saw a failure with this connection's token: check it now, or share the check
    /// another report started within `REPORT_WINDOW`.
    pub async fn reported_failure(
        &self,
        checker: &Checker,
        id: &ConnectionId,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<SharedCheck, TokenError> {
        let known = checker.store().handout(id).await?;
        if let Some(shared) = self.recent_report(id) {
            return Ok(shared);
        }
        let flight = self.flight(id);
        let Ok(_turn) = tokio::time::timeout_at(deadline, flight.lock.lock()).await else {
            return Err(waited_too_long(&known));
        };
        // The check we waited behind may have been a report's.
        if let Some(shared) = self.recent_report(id) {
            return Ok(shared);
        }
        let check = SharedCheck {
            report: self.check_when_free(checker, id, deadline, cancel).await?,
            at: Utc::now(),
            shared: false,
        };
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if reported.len() >= RECENT_REPORTS {
            let now = Instant::now();
            reported.retain(|_, (when, _)| now.duration_since(*when) < REPORT_WINDOW);
        }
        if reported.len() < RECENT_REPORTS {
            reported.insert(id.clone(), (Instant::now(), check.clone()));
        }
        Ok(check)
    }

    /// Checks the connection now, as `credwatch check` does; if another worker is checking it,
    /// waits for that check to end and then checks it again, so the answer is about now.
    pub async fn check(
        &self,
        checker: &Checker,
        id: &ConnectionId,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Report, TokenError> {
        let known = checker.store().handout(id).await?;
        let flight = self.flight(id);
        let Ok(_turn) = tokio::time::timeout_at(deadline, flight.lock.lock()).await else {
            return Err(waited_too_long(&known));
        };
        self.check_when_free(checker, id, deadline, cancel).await
    }

    /// Claims and checks the connection, waiting (with backoff, within `deadline`) while
    /// another worker holds its lease.
    async fn check_when_free(
        &self,
        checker: &Checker,
        id: &ConnectionId,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Report, TokenError> {
        let store = checker.store();
        let mut pause = Duration::from_millis(20);
        loop {
            let now = Utc::now();
            match store.claim(id, &checker.lease(now), now).await? {
                ClaimOutcome::Claimed(claimed) => {
                    return Ok(checker.check(*claimed, cancel).await?);
                }
                ClaimOutcome::Busy { .. } => {
                    if Instant::now() + pause >= deadline || cancel.is_cancelled() {
                        return Err(waited_too_long(&store.handout(id).await?));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    fn recent_report(&self, id: &ConnectionId) -> Option<SharedCheck> {
        let reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let (when, check) = reported.get(id)?;
        (when.elapsed() < REPORT_WINDOW).then(|| SharedCheck {
            shared: true,
            ..check.clone()
        })
    }
}

/// The stored token if it is good for `min_valid`; an error if the connection is broken.
fn usable(h: &Handout, min_valid: Duration, refreshed: bool) -> Result<Option<Handed>, TokenError> {
    let c = h;
    if c.status == ConnectionStatus::Broken {
        return Err(broken(c));
    }
    let needed = Utc::now() + TimeDelta::from_std(min_valid).unwrap_or(TimeDelta::MAX);
    // No stated expiry: the provider does not end it by time, as far as anyone can know.
    let fresh = c.access_expires_at.is_none_or(|at| at >= needed);
    Ok(fresh.then(|| handed(h, refreshed)))
}

/// After a refresh (ours or another's, seen as a newer generation): the new token, valid, even
/// if the provider gives tokens shorter than `min_valid` (refreshing again would not help).
fn served(h: &Handout, seen: i64, min_valid: Duration) -> Result<Option<Handed>, TokenError> {
    if let Some(fresh) = usable(h, min_valid, h.token_generation != seen)? {
        return Ok(Some(fresh));
    }
    let valid = h.access_expires_at.is_some_and(|at| at > Utc::now());
    Ok((h.token_generation != seen && valid).then(|| handed(h, true)))
}

fn handed(h: &Handout, refreshed: bool) -> Handed {
    Handed {
        access_token: h.access_token.clone(),
        expires_at: h.access_expires_at,
        scopes: h.scopes.clone(),
        refreshed,
    }
}

fn broken(c: &Handout) -> TokenError {
    let category = c.reason.as_deref().and_then(|r| r.parse::<Category>().ok());
    TokenError::Broken {
        id: c.id.clone(),
        category,
        reason: match category {
            Some(cat) => crate::notices::explain(cat, c.provider.as_str()),
            None => c.reason.clone().unwrap_or_else(|| "broken".into()),
        },
        since: c.since,
    }
}

/// The check ran (or another did) and left no token good enough.
fn unavailable(c: &Handout, report: Option<&Report>) -> TokenError {
    if c.status == ConnectionStatus::Broken {
        return broken(c);
    }
    let why = match report.map(|r| &r.outcome) {
        Some(ReportOutcome::Checked {
            detail, category, ..
        }) => format!("{category}: {detail}"),
        Some(ReportOutcome::Skipped { why }) => format!("the check did not run: {why}"),
        None => format!(
            "the last check left it {}{}",
            c.status,
            c.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    };
    TokenError::Unavailable {
        why,
        retry_after: retry_after(c),
    }
}

fn waited_too_long(c: &Handout) -> TokenError {
    TokenError::Unavailable {
        why: "a refresh of this connection is still running".into(),
        retry_after: Duration::from_secs(1).max(retry_after(c).min(Duration::from_secs(5))),
    }
}

/// Until the connection's next check, within reason.
fn retry_after(c: &Handout) -> Duration {
    (c.next_check_at - Utc::now())
        .to_std()
        .unwrap_or_default()
        .clamp(Duration::from_secs(1), Duration::from_secs(300))
}
