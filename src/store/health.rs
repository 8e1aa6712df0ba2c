//! Whether the database takes writes. Every write the daemon's work depends on reports here,
//! so readiness and the service status can say so while writes fail (a full disk, a database
//! that is down), and the log says it once when an episode starts and once when it ends, not
//! once per attempt. An episode ends only once writes have gone through for `QUIET` with no
//! failure: on a nearly full disk a small write can still fit where a larger one fails, and one
//! lucky write is no recovery.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::StoreError;

/// How long writes must go through, without a failure, before an episode is over.
const QUIET: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Writes have been failing since `since`; `error` is the latest failure, at `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritesFailing {
    pub since: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub error: String,
}

impl std::fmt::Display for WritesFailing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database writes failing since {}: {}",
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.error
        )
    }
}

#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<WritesFailing>>,
}

impl WriteHealth {
    /// Notes how a write went. Only the database's own failures count: a write refused for
    /// what it found (a lost lease, an unknown id) went through. A write that found nothing to
    /// change proves nothing either way (a full disk lets it commit), so `wrote` says whether
    /// a success wrote something.
    pub fn record<T>(&self, result: &Result<T, StoreError>, wrote: impl Fn(&T) -> bool) {
        self.record_at(result, wrote, Utc::now());
    }

    fn record_at<T>(
        &self,
        result: &Result<T, StoreError>,
        wrote: impl Fn(&T) -> bool,
        now: DateTime<Utc>,
    ) {
        if matches!(result, Ok(v) if !wrote(v)) {
            return;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Err(e) if e.is_outage() => match failing.as_mut() {
                Some(f) => {
                    f.error = e.to_string();
                    f.last = now;
                }
                None => {
                    tracing::error!(
                        "database writes are failing: {e}; no check runs and no notice is sent \
                         until they succeed again (readiness answers 503 meanwhile)"
                    );
                    *failing = Some(WritesFailing {
                        since: now,
                        last: now,
                        error: e.to_string(),
                    });
                }
            },
            _ => {
                if failing.as_ref().is_some_and(|f| now - f.last >= QUIET)
                    && let Some(f) = failing.take()
                {
                    tracing::info!(
                        since = %f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "database writes succeed again"
                    );
                }
            }
        }
    }

    pub fn failing(&self) -> Option<WritesFailing> {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ConnectionId;

    #[test]
    fn an_episode_starts_at_the_first_failure_and_ends_after_a_quiet_spell() {
        let health = WriteHealth::default();
        let all = |_: &()| true;
        let t0 = Utc::now();
        let at = |secs: i64| t0 + chrono::TimeDelta::seconds(secs);
        health.record_at(&Err(StoreError::Commit("disk full".into())), all, at(0));
        let first = health.failing().expect("failing");
        // Nothing written is no sign of recovery, and neither is one write that fitted.
        health.record_at(&Ok(0), |n| *n > 0, at(1));
        health.record_at(&Ok(()), all, at(2));
        health.record_at(&Err(StoreError::Commit("still full".into())), all, at(3));
        let again = health.failing().expect("still failing");
        assert_eq!(again.since, first.since);
        assert!(again.error.contains("still full"), "{again}");
        health.record_at(&Ok(()), all, at(12));
        assert!(
            health.failing().is_some(),
            "9 s without a failure is not enough"
        );
        // A refusal is an answer from a working database.
        health.record_at(
            &Err(StoreError::LeaseLost(ConnectionId::generate())),
            all,
            at(13),
        );
        assert_eq!(health.failing(), None);
    }
}
