//! What the operator is told. A provider that refuses our client is held back with one alert.
//! Provider-wide trouble is judged over one sweep of a provider: when most of its checks fail
//! without an answer about the grant (an outage), or most find a grant gone at once (more likely
//! a provider incident or a change on our side than that many owners revoking together), the
//! operator is told once, and told again only after the provider has recovered in between.

use std::collections::BTreeMap;

use chrono::Utc;

use std::time::Duration;

use chrono::{DateTime, TimeDelta};

use super::{Checker, Provider};
use crate::domain::{Category, Consequence, ProviderId};
use crate::store::ALERT_CLIENT_MISCONFIGURED;
use crate::store::StoreError;

pub const ALERT_PROVIDER_OUTAGE: &str = "provider_outage";
pub const ALERT_MASS_BREAKAGE: &str = "mass_breakage";
/// A rotation lost on our side: ours to look into (crashes, stalls), never the owner's doing.
pub const ALERT_ROTATION_LOST: &str = "rotation_lost";

/// The first wait before a held provider is tried again; it doubles up to `ALERT_RETRY_MAX`.
const ALERT_RETRY_START: Duration = Duration::from_secs(300);
const ALERT_RETRY_MAX: Duration = Duration::from_secs(3600);

/// Fewer checks than this in a sweep say nothing about the provider as a whole.
const MIN_CHECKS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Too few checks to judge.
    Quiet,
    /// At least 90% healthy: whatever was wrong is over.
    Fine,
    Trouble {
        kind: &'static str,
        detail: String,
    },
    /// Neither fine nor in trouble: leave any alert as it is.
    Mixed,
}

/// Judges one sweep's categories for one provider.
pub fn judge(by_category: &BTreeMap<Category, u64>) -> Verdict {
    let total: u64 = by_category.values().sum();
    let count = |c: Consequence| -> u64 {
        by_category
            .iter()
            .filter(|(k, _)| k.consequence() == c)
            .map(|(_, n)| n)
            .sum()
    };
    let (healthy, failing, broken) = (
        count(Consequence::Healthy),
        count(Consequence::Degraded),
        count(Consequence::Broken),
    );
    if total < MIN_CHECKS {
        return Verdict::Quiet;
    }
    if failing * 2 >= total {
        return Verdict::Trouble {
            kind: ALERT_PROVIDER_OUTAGE,
            detail: format!(
                "{failing} of {total} checks in one sweep failed without an answer about the grant \
                 (timeouts, 5xx, 429 or unrecognised answers); its connections are degraded, not broken"
            ),
        };
    }
    if broken * 2 >= total {
        return Verdict::Trouble {
            kind: ALERT_MASS_BREAKAGE,
            detail: format!(
                "{broken} of {total} connections were found broken in one sweep: a provider \
                 incident or a change on our side (client, scopes, app status) is more likely than \
                 that many owners revoking at once"
            ),
        };
    }
    if healthy * 10 >= total * 9 {
        Verdict::Fine
    } else {
        Verdict::Mixed
    }
}

/// Opens or closes the provider-wide alerts after a sweep of `provider`.
pub async fn review(
    checker: &Checker,
    provider: &ProviderId,
    by_category: &BTreeMap<Category, u64>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let store = checker.store();
    match judge(by_category) {
        Verdict::Trouble { kind, detail } => {
            if store
                .open_provider_alert(provider, kind, &detail, now, now, checker.operator())
                .await?
            {
                tracing::error!(provider = %provider, kind, "provider {provider}: {detail}");
                checker.outbox_signal().notify_one();
            }
        }
        Verdict::Fine => {
            for kind in [
                ALERT_PROVIDER_OUTAGE,
                ALERT_MASS_BREAKAGE,
                ALERT_ROTATION_LOST,
            ] {
                if store.close_provider_alert(provider, kind, now).await? {
                    tracing::info!(provider = %provider, kind, "provider {provider} is fine again");
                }
            }
        }
        Verdict::Quiet | Verdict::Mixed => {}
    }
    Ok(())
}

/// A connection broken because we lost its rotated tokens: the operator hears of it (once per
/// provider until a sweep of it is healthy again), since the cause is on our side.
pub(super) async fn rotation_lost(
    checker: &Checker,
    provider: &Provider,
    connection: &crate::store::Connection,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id = provider.id();
    let detail = format!(
        "connection {} (\"{}\", owner {}) broke because credwatch lost tokens the provider had \
         rotated: {detail}. Look for a crash, a kill or a stalled replica at that time; the \
         owner was asked to reconnect",
        connection.id, connection.name, connection.owner
    );
    tracing::error!(provider = %id, connection = %connection.id, "{detail}");
    if checker
        .store()
        .open_provider_alert(
            id,
            ALERT_ROTATION_LOST,
            &detail,
            now,
            now,
            checker.operator(),
        )
        .await?
    {
        checker.outbox_signal().notify_one();
    }
    Ok(())
}

/// A client the provider refuses is the operator's problem: one alert per provider and
/// incident, and the provider's checks held back until a trial check gets through.
pub(super) async fn client_refused(
    checker: &Checker,
    provider: &Provider,
    category: Category,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let id = provider.id();
    match category.consequence() {
        Consequence::Operator => {
            let retry = now + TimeDelta::from_std(ALERT_RETRY_START).unwrap_or(TimeDelta::MAX);
            let opened = checker
                .store()
                .open_provider_alert(
                    id,
                    ALERT_CLIENT_MISCONFIGURED,
                    detail,
                    now,
                    retry,
                    checker.operator(),
                )
                .await?;
            provider.set_held(true);
            if opened {
                tracing::error!(
                    provider = %id,
                    detail,
                    "provider {id} refuses our OAuth client; check its client_id, client_secret \
                     and client_auth in the config. No connection is marked broken for this; \
                     the provider's checks are held back and retried with a trial check"
                );
            } else {
                checker
                    .store()
                    .postpone_provider_alert(
                        id,
                        ALERT_CLIENT_MISCONFIGURED,
                        now,
                        ALERT_RETRY_START,
                        ALERT_RETRY_MAX,
                    )
                    .await?;
            }
        }
        // The provider answered about the grant itself: our client got through.
        Consequence::Healthy | Consequence::Broken if provider.is_held() => {
            if checker
                .store()
                .close_provider_alert(id, ALERT_CLIENT_MISCONFIGURED, now)
                .await?
            {
                tracing::info!(provider = %id, "provider {id} accepts our OAuth client again; its checks resume");
            }
            provider.set_held(false);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;

    fn sweep(counts: &[(Category, u64)]) -> BTreeMap<Category, u64> {
        counts.iter().copied().collect()
    }

    #[test]
    fn a_sweep_is_judged_by_its_shares() {
        assert_eq!(judge(&sweep(&[(Transient, 4)])), Verdict::Quiet);
        assert!(matches!(
            judge(&sweep(&[(Transient, 4), (RateLimited, 2), (Healthy, 5)])),
            Verdict::Trouble {
                kind: ALERT_PROVIDER_OUTAGE,
                ..
            }
        ));
        assert!(matches!(
            judge(&sweep(&[(Revoked, 3), (Expired, 3), (Healthy, 4)])),
            Verdict::Trouble {
                kind: ALERT_MASS_BREAKAGE,
                ..
            }
        ));
        assert_eq!(
            judge(&sweep(&[(Healthy, 18), (Transient, 2)])),
            Verdict::Fine
        );
        assert_eq!(
            judge(&sweep(&[(Healthy, 7), (Transient, 3)])),
            Verdict::Mixed
        );
        // The operator's own problem is a separate alert, and no outage.
        assert_eq!(
            judge(&sweep(&[(ClientMisconfigured, 9), (Healthy, 1)])),
            Verdict::Mixed
        );
    }
}
