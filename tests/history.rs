//! What the store keeps and for how long: each connection's check history, a chain from its
//! last check, and the event log, each pruned after its retention.

use std::sync::Arc;

use chrono::TimeDelta;
use credwatch::crypto::Keyring;
use credwatch::domain::ConnectionId;
use credwatch::store::{self, ClaimOutcome};

use crate::store::{lease, new_connection, now, postgres, sqlite};

#[tokio::test]
async fn a_connections_history_is_its_own_checks_newest_first_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    history_follows_each_connections_checks(sqlite(dir.path())).await;
}

#[tokio::test]
async fn a_connections_history_is_its_own_checks_newest_first_on_postgres() {
    history_follows_each_connections_checks(postgres().await).await;
}

/// Every way a result is written (tokens and result together, a healthy result, a failure,
/// a recovery) links its history row to the connection's one before, and two connections
/// checked side by side keep their own histories.
async fn history_follows_each_connections_checks(db: credwatch::config::DatabaseConfig) {
    use credwatch::domain::{Category, Phase};
    use store::{CheckResult, DueQuery, Rotation, Transition};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    credwatch::crypto::generate_key_file(&key).unwrap();
    let store = store::open(&db, Arc::new(Keyring::from_files(&key, &[]).unwrap()))
        .await
        .unwrap();
    for _ in 0..2 {
        store.add_connection(new_connection(), now()).await.unwrap();
    }
    let provider = "acme".parse().unwrap();
    let fresh = credwatch::tokens::TokenSet::from_json(
        br#"{"access_token":"a2","refresh_token":"r2"}"#,
        now(),
    )
    .unwrap();
    let mut at = now();
    // Each round's result is told apart by its latency: the round's number.
    let rounds: [(Category, Transition); 4] = [
        (Category::Healthy, Transition::Healthy),
        (Category::Healthy, Transition::Healthy),
        (Category::Transient, Transition::Degraded),
        (Category::Healthy, Transition::Healthy),
    ];
    for (round, (category, transition)) in rounds.into_iter().enumerate() {
        at += TimeDelta::minutes(10);
        let claimed = store
            .claim_due(
                DueQuery {
                    provider: &provider,
                    now: at,
                    limit: 10,
                    operator: None,
                },
                &lease("w", at + TimeDelta::minutes(5)),
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2, "round {round}");
        for c in &claimed {
            let result = CheckResult {
                started_at: c.started_at,
                generation: c.tokens.generation,
                phase: Phase::Refresh,
                category,
                http_status: Some(200),
                latency_ms: round as u64,
                detail: format!("round {round}"),
                transition,
                next_check_at: at + TimeDelta::minutes(1),
                finished_at: at,
                notify_at: at,
                first_reminder_at: None,
                refresh_uncertain: Some(false),
            };
            if round == 0 {
                let rotation = Rotation {
                    expected_generation: c.tokens.generation,
                    tokens: &fresh,
                    now: at,
                };
                let result = CheckResult {
                    generation: c.tokens.generation + 1,
                    ..result
                };
                assert!(store.finish_refreshed(c, rotation, &result).await.unwrap());
            } else {
                store.finish_check(c, &result).await.unwrap();
            }
        }
    }
    let all = store.connections().await.unwrap();
    assert_eq!(all.len(), 2);
    for c in &all {
        let history = store.recent_checks(&c.id, 10).await.unwrap();
        let rounds: Vec<u64> = history.iter().filter_map(|h| h.latency_ms).collect();
        assert_eq!(
            rounds,
            [3, 2, 1, 0],
            "newest first, each once, only its own"
        );
        assert_eq!(history[1].category, Some(Category::Transient));
        let last_two = store.recent_checks(&c.id, 2).await.unwrap();
        assert_eq!(last_two.len(), 2);
        assert_eq!(last_two[0].latency_ms, Some(3));
        assert!(
            history.iter().all(|h| h.instance == "w"),
            "each row names the instance that ran it"
        );
    }

    // Rounds 0 and 1 finished before now + 25 min: two rows of each connection are old. A
    // call removes no more than its limit, and the next goes on.
    let start = now();
    let cut = start + TimeDelta::minutes(25);
    assert_eq!(store.prune_history(cut, 1).await.unwrap(), 1);
    assert_eq!(store.prune_history(cut, 100).await.unwrap(), 3);
    assert_eq!(store.prune_history(cut, 100).await.unwrap(), 0);
    let rounds_of = |history: Vec<credwatch::store::CheckRecord>| -> Vec<u64> {
        history.iter().filter_map(|h| h.latency_ms).collect()
    };
    for c in &all {
        let kept = rounds_of(store.recent_checks(&c.id, 10).await.unwrap());
        assert_eq!(kept, [3, 2], "the chain ends where the old rows were");
    }
    // However old, a connection's last check stays: it says why the connection is as it is.
    let later = start + TimeDelta::days(1);
    assert_eq!(store.prune_history(later, 100).await.unwrap(), 2);
    for c in &all {
        let kept = rounds_of(store.recent_checks(&c.id, 10).await.unwrap());
        assert_eq!(kept, [3]);
    }

    // Four claims by one instance registered it once, and took one number for it (a
    // conflicting insert on every claim would have used up PostgreSQL's sequence).
    store.close().await;
    let url = match &db.url {
        credwatch::config::DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        credwatch::config::DatabaseUrl::Postgres(url) => {
            secrecy::ExposeSecret::expose_secret(url).to_owned()
        }
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (count, highest): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(MAX(id) AS BIGINT) FROM instances")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((count, highest), (1, 1));
    if let credwatch::config::DatabaseUrl::Postgres(_) = &db.url {
        let next: i64 =
            sqlx::query_scalar("SELECT CAST(last_value AS BIGINT) FROM instances_id_seq")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(next, 1, "numbers taken from the sequence");
    }
}

#[tokio::test]
async fn old_events_go_unless_a_delivery_waits_for_them_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    events_are_kept_for_their_retention(sqlite(dir.path())).await;
}

#[tokio::test]
async fn old_events_go_unless_a_delivery_waits_for_them_on_postgres() {
    events_are_kept_for_their_retention(postgres().await).await;
}

/// Three connections created two hours apart: pruning takes the old events, but not one a
/// webhook delivery still waits for, nor a newer one.
async fn events_are_kept_for_their_retention(db: credwatch::config::DatabaseConfig) {
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    let t0 = now();
    // A new endpoint gets what happens from now on.
    assert_eq!(store.fan_out("hook", &[], t0).await.unwrap(), 0);
    let mut created = Vec::new();
    for hours in [0, 2, 4] {
        let at = t0 + TimeDelta::hours(hours);
        created.push(store.add_connection(new_connection(), at).await.unwrap());
        if hours == 0 {
            // The first creation waits for its delivery; the others are never fanned out.
            assert_eq!(store.fan_out("hook", &[], at).await.unwrap(), 1);
        }
    }
    let left = || async {
        let events = store.events_after(0, &[], 100).await.unwrap();
        events
            .iter()
            .filter_map(|e| e.event.connection().cloned())
            .collect::<Vec<ConnectionId>>()
    };
    assert_eq!(left().await, created);
    let pruned = store.prune_events(t0 + TimeDelta::hours(3)).await.unwrap();
    assert_eq!(
        pruned, 1,
        "the second creation is old and nothing waits for it"
    );
    assert_eq!(left().await, [created[0].clone(), created[2].clone()]);
    // Every event is old now: only the one still to be delivered stays.
    let pruned = store.prune_events(t0 + TimeDelta::hours(5)).await.unwrap();
    assert_eq!(pruned, 1);
    assert_eq!(left().await, [created[0].clone()]);
}

/// A SQLite database in `dir`, and the URL that opens it without the store.
fn sqlite_and_url(dir: &std::path::Path) -> (credwatch::config::DatabaseConfig, String) {
    let db = sqlite(dir);
    let credwatch::config::DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!()
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    (db, url)
}

/// A throwaway PostgreSQL database, and its URL.
async fn postgres_and_url() -> (credwatch::config::DatabaseConfig, String) {
    let url = crate::helpers::peers::postgres_database().await;
    let db = credwatch::config::DatabaseConfig {
        url: credwatch::config::DatabaseUrl::Postgres(secrecy::SecretString::from(url.clone())),
        max_connections: 4,
    };
    (db, url)
}

#[tokio::test]
async fn events_and_history_written_by_name_are_read_after_the_upgrade_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = sqlite_and_url(dir.path());
    events_and_history_survive_the_upgrade_to_numbers(db, "sqlite", &url).await;
}

#[tokio::test]
async fn events_and_history_written_by_name_are_read_after_the_upgrade_on_postgres() {
    let (db, url) = postgres_and_url().await;
    events_and_history_survive_the_upgrade_to_numbers(db, "postgres", &url).await;
}

/// A database at the schema before event types and instances were numbers, with events, a
/// history row and a leased connection in it, opened by this version: every event reads back
/// as it was written, filters by type still find them, the history row still names its
/// instance, and the lease still holds, for the same instance.
async fn events_and_history_survive_the_upgrade_to_numbers(
    db: credwatch::config::DatabaseConfig,
    backend: &str,
    url: &str,
) {
    use sqlx::Connection;
    let before = tempfile::tempdir().unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0017" {
            std::fs::copy(&path, before.path().join(name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    migrator.run(&mut conn).await.unwrap();
    for (kind, connection, data) in [
        (
            "connection.created",
            "conn_aaaaaaaaaaaaaa",
            r#"{"name":"CRM","owner":"ada@example.com","provider":"acme"}"#,
        ),
        (
            "connection.reauthorized",
            "conn_aaaaaaaaaaaaaa",
            r#"{"provider":"acme"}"#,
        ),
    ] {
        sqlx::query(
            "INSERT INTO events (type, at, connection_id, order_key, data) \
             VALUES ($1, 1800000000000, $2, '', $3)",
        )
        .bind(kind)
        .bind(connection)
        .bind(data)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO checks (connection_id, instance, token_generation, started_at, finished_at, \
           phase, category, http_status, latency_ms, error) \
         VALUES ('conn_aaaaaaaaaaaaaa', 'sweep@old:1:ab', 1, 1, 2, 'refresh', 'healthy', 200, 5, 'ok')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let far = now() + TimeDelta::hours(1);
    let keyring = Arc::new(Keyring::from_bytes([1; 32]));
    sqlx::query(
        "INSERT INTO connections (id, provider, name, owner_email, key_id, access_token, \
           tokens_updated_at, status_since, next_check_at, created_at, updated_at, \
           lease_owner, lease_expires_at) \
         VALUES ('conn_bbbbbbbbbbbbbb', 'acme', 'CRM', 'ada@example.com', $1, $2, \
           1, 1, 1, 1, 1, 'sweep@old:2:cd', $3)",
    )
    .bind(keyring.current_id().as_str().to_owned())
    .bind(vec![0u8])
    .bind(far.timestamp_millis())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = store::open(&db, keyring).await.unwrap();
    let names = |events: Vec<credwatch::events::Stored>| -> Vec<&'static str> {
        events.iter().map(|e| e.event.type_name()).collect()
    };
    let events = store.events_after(0, &[], 10).await.unwrap();
    assert_eq!(
        names(events),
        ["connection.created", "connection.reauthorized"]
    );
    let only = ["connection.reauthorized".to_owned()];
    let events = store.events_after(0, &only, 10).await.unwrap();
    assert_eq!(names(events), ["connection.reauthorized"]);
    let leased: ConnectionId = "conn_bbbbbbbbbbbbbb".parse().unwrap();
    match store.claim(&leased, &lease("w", far), now()).await.unwrap() {
        ClaimOutcome::Busy { owner } => assert_eq!(owner, "sweep@old:2:cd"),
        ClaimOutcome::Claimed(_) => panic!("a lease held before the upgrade was taken"),
    }
    store.close().await;
    // The history row names its instance by a number now, the same name.
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let name: String =
        sqlx::query_scalar("SELECT i.name FROM checks c JOIN instances i ON i.id = c.instance_id")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(name, "sweep@old:1:ab");
}

#[tokio::test]
async fn history_rows_by_name_and_by_number_read_the_same_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = sqlite_and_url(dir.path());
    history_by_name_and_by_number(db, &url).await;
}

#[tokio::test]
async fn history_rows_by_name_and_by_number_read_the_same_on_postgres() {
    let (db, url) = postgres_and_url().await;
    history_by_name_and_by_number(db, &url).await;
}

/// History rows written before phases and categories were numbers (names in `phase` and
/// `category`, the usual detail spelled out) read as they were written, beside a check written
/// now, which stores numbers and leaves its usual detail out.
async fn history_by_name_and_by_number(db: credwatch::config::DatabaseConfig, url: &str) {
    use credwatch::domain::{Category, Phase};
    use sqlx::Connection;
    use store::{CheckResult, Transition};
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    let id = store.add_connection(new_connection(), now()).await.unwrap();

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut last: Option<i64> = None;
    for (phase, category, error) in [
        ("probe", "revoked", "invalid_grant"),
        ("refresh", "healthy", "refreshed"),
    ] {
        let written: i64 = sqlx::query_scalar(
            "INSERT INTO checks (connection_id, previous_id, token_generation, started_at, \
               finished_at, phase, category, http_status, latency_ms, error) \
             VALUES ($1, $2, 1, 1, 2, $3, $4, 200, 5, $5) RETURNING id",
        )
        .bind(id.as_str())
        .bind(last)
        .bind(phase)
        .bind(category)
        .bind(error)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        last = Some(written);
    }
    sqlx::query("UPDATE connections SET last_check_id = $1 WHERE id = $2")
        .bind(last)
        .bind(id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();

    let at = now() + TimeDelta::minutes(1);
    let claimed = match store
        .claim(&id, &lease("w", at + TimeDelta::minutes(5)), at)
        .await
    {
        Ok(ClaimOutcome::Claimed(c)) => c,
        other => panic!("not claimed: {other:?}"),
    };
    let result = CheckResult {
        started_at: claimed.started_at,
        generation: claimed.tokens.generation,
        phase: Phase::Refresh,
        category: Category::Healthy,
        http_status: Some(200),
        latency_ms: 7,
        detail: credwatch::classify::REFRESHED.to_owned(),
        transition: Transition::Healthy,
        next_check_at: at + TimeDelta::hours(1),
        finished_at: at,
        notify_at: at,
        first_reminder_at: None,
        refresh_uncertain: Some(false),
    };
    store.finish_check(&claimed, &result).await.unwrap();

    let history = store.recent_checks(&id, 10).await.unwrap();
    let read: Vec<_> = history
        .iter()
        .map(|h| (h.phase, h.category, h.error.as_deref(), h.latency_ms))
        .collect();
    assert_eq!(
        read,
        [
            (
                Some(Phase::Refresh),
                Some(Category::Healthy),
                Some("refreshed"),
                Some(7)
            ),
            (
                Some(Phase::Refresh),
                Some(Category::Healthy),
                Some("refreshed"),
                Some(5)
            ),
            (
                Some(Phase::Probe),
                Some(Category::Revoked),
                Some("invalid_grant"),
                Some(5)
            ),
        ]
    );
    // The new row holds numbers only, and no detail: the usual one is not repeated.
    let stored: (Option<String>, Option<String>, i64, i64, Option<String>) = sqlx::query_as(
        "SELECT phase, category, CAST(phase_code AS BIGINT), CAST(category_code AS BIGINT), \
           error FROM checks WHERE id > $1",
    )
    .bind(last)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored, (None, None, 1, 1, None));
    conn.close().await.unwrap();
    store.close().await;
}
