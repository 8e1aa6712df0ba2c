//! What the status line and `/metrics` count: connections by provider, status and reason, on
//! both backends. The healthy are counted as what is left of each provider's connections once
//! the others are counted, so a mistake there shows as a wrong number, not a missing one.

use std::sync::Arc;

use chrono::TimeDelta;
use credwatch::config::DatabaseConfig;
use credwatch::crypto::Keyring;
use credwatch::domain::{Category, Phase};
use credwatch::store::{self, CheckResult, DueQuery, Transition};

use crate::store::{lease, new_connection, now, postgres, sqlite};

#[tokio::test]
async fn connections_are_counted_by_provider_status_and_reason_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    counted(sqlite(dir.path())).await;
}

#[tokio::test]
async fn connections_are_counted_by_provider_status_and_reason_on_postgres() {
    counted(postgres().await).await;
}

async fn counted(db: DatabaseConfig) {
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    // acme: one broken, one degraded, two healthy; globex: both broken, none healthy.
    for (provider, n) in [("acme", 4), ("globex", 2)] {
        for _ in 0..n {
            let mut new = new_connection();
            new.provider = provider.parse().unwrap();
            store.add_connection(new, now()).await.unwrap();
        }
    }
    let later = now() + TimeDelta::seconds(1);
    let verdicts = [
        (
            "acme",
            vec![
                (Category::Revoked, Transition::Broken),
                (Category::Transient, Transition::Degraded),
            ],
        ),
        (
            "globex",
            vec![
                (Category::Revoked, Transition::Broken),
                (Category::Expired, Transition::Broken),
            ],
        ),
    ];
    for (provider, verdicts) in verdicts {
        let provider = provider.parse().unwrap();
        let due = DueQuery {
            provider: &provider,
            now: later,
            limit: verdicts.len() as u32,
            operator: None,
        };
        let claimed = store
            .claim_due(due, &lease("a", later + TimeDelta::minutes(5)))
            .await
            .unwrap();
        assert_eq!(claimed.len(), verdicts.len());
        for (c, (category, transition)) in claimed.iter().zip(verdicts) {
            let result = CheckResult {
                started_at: c.started_at,
                generation: c.tokens.generation,
                phase: Phase::Refresh,
                category,
                http_status: Some(400),
                latency_ms: 5,
                detail: "counted".into(),
                transition,
                next_check_at: later + TimeDelta::hours(1),
                finished_at: later,
                notify_at: later,
                first_reminder_at: None,
                refresh_uncertain: Some(false),
            };
            store.finish_check(c, &result).await.unwrap();
        }
    }

    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            counts.connections,
            counts.healthy,
            counts.degraded,
            counts.broken
        ),
        (6, 2, 1, 3)
    );
    let snapshot = store.metrics_snapshot().await.unwrap();
    let rows: Vec<(&str, &str, Option<&str>, i64)> = snapshot
        .connections
        .iter()
        .map(|c| {
            (
                c.provider.as_str(),
                c.status.as_str(),
                c.reason.as_deref(),
                c.count,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("acme", "broken", Some("revoked"), 1),
            ("acme", "degraded", Some("transient"), 1),
            ("acme", "healthy", None, 2),
            ("globex", "broken", Some("expired"), 1),
            ("globex", "broken", Some("revoked"), 1),
        ],
        "a provider with none healthy has no healthy row"
    );
    store.close().await;
}
