//! Whether the database takes writes. Every write the daemon's work depends on reports here,
//! so readiness and the service status can say so while writes fail (a full disk, a database
//! that is down), and the log says it once when an episode starts and once when it ends, not
//! once per attempt.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::StoreError;

/// Writes have been failing since `since`; `error` is the latest failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritesFailing {
    pub since: DateTime<Utc>,
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
        if matches!(result, Ok(v) if !wrote(v)) {
            return;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Err(e) if e.is_outage() => match failing.as_mut() {
                Some(f) => f.error = e.to_string(),
                None => {
                    tracing::error!(
                        "database writes are failing: {e}; no check runs and no notice is sent \
                         until they succeed again (readiness answers 503 meanwhile)"
                    );
                    *failing = Some(WritesFailing {
                        since: Utc::now(),
                        error: e.to_string(),
                    });
                }
            },
            _ => {
                if let Some(f) = failing.take() {
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
    fn an_episode_starts_at_the_first_failure_and_ends_at_the_first_success() {
        let health = WriteHealth::default();
        let all = |_: &()| true;
        health.record(&Err(StoreError::Commit("disk full".into())), all);
        let first = health.failing().expect("failing");
        // Nothing written is no sign of recovery.
        health.record(&Ok(0), |n| *n > 0);
        health.record(&Err(StoreError::Commit("still full".into())), all);
        let again = health.failing().expect("still failing");
        assert_eq!(again.since, first.since);
        assert!(again.error.contains("still full"), "{again}");
        // A refusal is an answer from a working database.
        health.record(&Err(StoreError::LeaseLost(ConnectionId::generate())), all);
        assert_eq!(health.failing(), None);
        health.record(&Err(StoreError::Commit("full".into())), all);
        health.record(&Ok(()), all);
        assert_eq!(health.failing(), None);
    }
}
