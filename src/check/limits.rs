//! How hard we may push a provider: a cap on checks in flight and a steady request rate, both
//! per provider, and a pause when the provider says so (429 with Retry-After).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Spaces requests `1/rate` apart. A handful of lines, so no rate-limiting crate: the only
/// state is the next free slot, and waiting is a timer, never a poll.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(requests_per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / requests_per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Takes the next free slot and waits for it.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Takes the next free slot if it comes by `deadline` and waits for it; false (and no slot
    /// taken) when it would come later.
    pub async fn wait_until(&self, deadline: Instant) -> bool {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            if at > deadline {
                return false;
            }
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        true
    }

    /// No request before `until`: the provider asked for a pause.
    pub fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if until > *next {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_and_a_hold_moves_them_all() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
        pacer.hold_until(Instant::now() + Duration::from_secs(30));
        pacer.wait().await;
        assert_eq!(Instant::now() - start, Duration::from_millis(30_400));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_past_the_deadline_is_refused_and_not_taken() {
        let pacer = Pacer::new(1.0);
        let start = Instant::now();
        assert!(pacer.wait_until(start + Duration::from_millis(10)).await);
        assert!(!pacer.wait_until(start + Duration::from_millis(500)).await);
        assert!(pacer.wait_until(start + Duration::from_secs(2)).await);
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
