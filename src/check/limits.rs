//! How hard we may push a provider: a cap on checks in flight and a steady request rate, both
//! per provider, and a pause when the provider says so (429 with Retry-After).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The timer's resolution: waits shorter than this are not worth a sleep.
const TICK: Duration = Duration::from_millis(1);

/// Spaces requests `1/rate` apart. A handful of lines, so no rate-limiting crate: the only
/// state is the next free slot, and waiting is a timer, never a poll.
///
/// A slot less than a timer tick away is taken at once: tokio's timer cannot sleep less than a
/// millisecond, so at high rates every spaced request would otherwise wait a whole tick (64
/// checks starting together waited about 1 ms each at 100,000 requests per second). The rate
/// over any second is unchanged; at most a millisecond's worth of slots go early, by less than
/// a millisecond.
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
        sleep_unless_imminent(at).await;
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
        sleep_unless_imminent(at).await;
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

async fn sleep_unless_imminent(at: Instant) {
    if at.saturating_duration_since(Instant::now()) >= TICK {
        tokio::time::sleep_until(at).await;
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
    async fn slots_within_a_timer_tick_go_at_once_and_the_rate_holds() {
        // 100,000 a second: a hundred slots fit in the first millisecond.
        let pacer = Pacer::new(100_000.0);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.wait().await;
        }
        assert_eq!(Instant::now(), start, "no slot in the first tick waits");
        for _ in 0..100_000 {
            pacer.wait().await;
        }
        let took = Instant::now() - start;
        assert!(
            took >= Duration::from_millis(999) && took <= Duration::from_millis(1001),
            "{took:?}"
        );
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
