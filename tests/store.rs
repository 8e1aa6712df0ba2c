//! The store through the library API: round trips, encryption at rest, wrong keys.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use credwatch::config::{DatabaseConfig, DatabaseUrl};
use credwatch::crypto::{CryptoError, Keyring};
use credwatch::domain::{ConnectionStatus, PipelineState, Position};
use credwatch::store::{self, NewConnection, NewPipeline, StoreError};
use credwatch::tokens::TokenSet;
use secrecy::ExposeSecret;

pub(crate) fn sqlite(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        url: DatabaseUrl::Sqlite(dir.join("db/credwatch.db")),
        max_connections: 4,
    }
}

pub(crate) async fn postgres() -> DatabaseConfig {
    DatabaseConfig {
        url: DatabaseUrl::Postgres(secrecy::SecretString::from(
            crate::helpers::peers::postgres_database().await,
        )),
        max_connections: 4,
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_123).unwrap()
}

const ACCESS: &str = "ya29.A0ARrdaM-access-canary-7f3a9c";
const REFRESH: &str = "1//0refresh-canary-e41b77";

pub(crate) fn new_connection() -> NewConnection {
    let json = format!(
        r#"{{"access_token":"{ACCESS}","refresh_token":"{REFRESH}","expires_in":3600,"scope":"a b","refresh_token_expires_in":86400}}"#
    );
    NewConnection {
        provider: "acme".parse().unwrap(),
        name: "Sales CRM".into(),
        owner: "ada@example.com".parse().unwrap(),
        account: Some("acct-9".into()),
        tokens: TokenSet::from_json(json.as_bytes(), now()).unwrap(),
        external_id: None,
        metadata: None,
        credential_kind: "oauth",
    }
}

#[tokio::test]
async fn connections_pipelines_and_positions_round_trip_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(sqlite(dir.path())).await;
}

#[tokio::test]
async fn connections_pipelines_and_positions_round_trip_on_postgres() {
    round_trip(postgres().await).await;
}

async fn round_trip(db: DatabaseConfig) {
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    let id = store.add_connection(new_connection(), now()).await.unwrap();

    let c = store.connection(&id).await.unwrap();
    assert_eq!(
        (
            c.name.as_str(),
            c.provider.as_str(),
            c.owner.as_str(),
            c.account.as_deref()
        ),
        ("Sales CRM", "acme", "ada@example.com", Some("acct-9"))
    );
    assert_eq!(c.status, ConnectionStatus::Healthy);
    assert_eq!(c.scopes, ["a", "b"]);
    assert_eq!(c.since, now());
    assert_eq!(
        c.next_check_at,
        now(),
        "a new connection is due for its first check at once"
    );
    assert_eq!(c.access_expires_at, Some(now() + TimeDelta::seconds(3600)));
    assert_eq!(c.refresh_expires_at, Some(now() + TimeDelta::days(1)));
    assert!(c.has_refresh_token);

    let tokens = store.tokens(&id).await.unwrap();
    assert_eq!(tokens.access_token.expose_secret(), ACCESS);
    assert_eq!(tokens.refresh_token.unwrap().expose_secret(), REFRESH);

    let p = store
        .add_pipeline(
            NewPipeline {
                name: "P".into(),
                connections: vec![id.clone(), id.clone()],
                position: Some("c=1".parse().unwrap()),
                external_id: None,
            },
            now(),
        )
        .await
        .unwrap();
    let later = now() + TimeDelta::minutes(5);
    let pos: Position = "c=2".parse().unwrap();
    let updated = store.set_position(&p, &pos, later).await.unwrap();
    assert_eq!(updated.position, Some(pos));
    assert_eq!(updated.position_updated_at, Some(later));
    assert_eq!(updated.state, PipelineState::Running);
    assert_eq!(
        updated.connections,
        vec![id.clone()],
        "duplicate links collapse to one"
    );
    assert_eq!(store.pipelines().await.unwrap().len(), 1);

    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            counts.connections,
            counts.healthy,
            counts.pipelines,
            counts.paused
        ),
        (1, 1, 1, 0)
    );

    assert!(matches!(
        store.remove_connection(&id).await,
        Err(StoreError::ConnectionInUse { .. })
    ));
    store.remove_pipeline(&p).await.unwrap();
    store.remove_connection(&id).await.unwrap();
    assert!(matches!(
        store.connection(&id).await,
        Err(StoreError::ConnectionNotFound(_))
    ));
}

#[tokio::test]
async fn the_database_files_hold_no_plaintext_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(&sqlite(dir.path()), Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    for _ in 0..20 {
        store.add_connection(new_connection(), now()).await.unwrap();
    }
    // Byte search of the database and its WAL, where fresh writes sit before a checkpoint.
    let mut searched = 0;
    for entry in std::fs::read_dir(dir.path().join("db")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        searched += bytes.len();
        for needle in [ACCESS, REFRESH, "canary"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "found {needle:?} in the database files"
            );
        }
    }
    assert!(searched > 4096, "nothing was written to search");
}

#[tokio::test]
async fn a_wrong_key_fails_clearly_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let right = Arc::new(Keyring::from_bytes([1; 32]));
    let store = store::open(&sqlite(dir.path()), right.clone())
        .await
        .unwrap();
    store.add_connection(new_connection(), now()).await.unwrap();
    drop(store);

    let err = store::open(&sqlite(dir.path()), Arc::new(Keyring::from_bytes([2; 32])))
        .await
        .err()
        .expect("a wrong key must be refused");
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Crypto(CryptoError::UnknownKey { .. })),
        "{text}"
    );
    assert!(
        text.contains(right.current_id().as_str()),
        "the message names the key the tokens need: {text}"
    );
}

#[tokio::test]
async fn a_wrong_key_in_the_config_is_refused_by_every_command() {
    let env = crate::helpers::TestEnv::new();
    env.add_connection("ada@example.com", r#"{"access_token":"a"}"#)
        .await;
    std::fs::remove_file(env.path("credwatch.key")).unwrap();
    env.ok(&[
        "key",
        "generate",
        env.path("credwatch.key").to_str().unwrap(),
    ])
    .await;
    let out = env.cli(&["status"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stored tokens were encrypted with key")
            && stderr.contains("previous_key_files"),
        "{stderr}"
    );
}

pub(crate) fn lease(owner: &str, until: DateTime<Utc>) -> store::Lease {
    store::Lease {
        owner: owner.into(),
        until,
    }
}

#[tokio::test]
async fn claims_and_leases_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    claims_take_a_batch_at_most_and_leases_keep_other_workers_out_until_they_expire(sqlite(
        dir.path(),
    ))
    .await;
}

#[tokio::test]
async fn claims_and_leases_on_postgres() {
    claims_take_a_batch_at_most_and_leases_keep_other_workers_out_until_they_expire(
        postgres().await,
    )
    .await;
}

async fn claims_take_a_batch_at_most_and_leases_keep_other_workers_out_until_they_expire(
    db: DatabaseConfig,
) {
    use credwatch::domain::{Category, Phase};
    use store::{CheckResult, ClaimOutcome, DueQuery, Rotation, Transition};
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    for _ in 0..3 {
        store.add_connection(new_connection(), now()).await.unwrap();
    }
    let provider = "acme".parse().unwrap();
    let due = |at| DueQuery {
        provider: &provider,
        now: at,
        limit: 2,
        operator: None,
    };
    let later = now() + TimeDelta::seconds(1);
    let a = store
        .claim_due(due(later), &lease("a", later + TimeDelta::minutes(5)))
        .await
        .unwrap();
    assert_eq!(a.len(), 2, "a batch is at most the limit");
    assert_eq!(a[0].tokens.access_token.expose_secret(), ACCESS);
    let b = store
        .claim_due(due(later), &lease("b", later + TimeDelta::minutes(5)))
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "leased connections are not claimed twice");
    assert_ne!(b[0].connection.id, a[0].connection.id);
    let busy = store
        .claim(
            &a[0].connection.id,
            &lease("b", later + TimeDelta::minutes(5)),
            later,
        )
        .await
        .unwrap();
    assert!(matches!(busy, ClaimOutcome::Busy { owner } if owner == "a"));

    // Worker a dies; once its leases expire, b takes its connections over.
    let expired = later + TimeDelta::minutes(6);
    let taken = store
        .claim_due(due(expired), &lease("b", expired + TimeDelta::minutes(5)))
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    // A late result from a is refused, and so is a rotation on stale tokens.
    let result = CheckResult {
        started_at: a[0].started_at,
        generation: a[0].tokens.generation,
        phase: Phase::Refresh,
        category: Category::Revoked,
        http_status: Some(400),
        latency_ms: 5,
        detail: "late".into(),
        transition: Transition::Broken,
        next_check_at: expired,
        finished_at: expired,
        notify_at: expired,
        first_reminder_at: None,
        refresh_uncertain: Some(false),
    };
    assert!(matches!(
        store.finish_check(&a[0], &result).await,
        Err(StoreError::LeaseLost(_))
    ));
    let fresh = TokenSet::from_json(br#"{"access_token":"new-access-token"}"#, expired).unwrap();
    let claimed_by_b = taken
        .iter()
        .find(|c| c.connection.id == a[0].connection.id)
        .unwrap();
    let stale = Rotation {
        expected_generation: claimed_by_b.tokens.generation + 7,
        tokens: &fresh,
        now: expired,
    };
    assert!(matches!(
        store.save_rotation(claimed_by_b, stale).await,
        Err(StoreError::TokensChanged(_))
    ));
    let ok = Rotation {
        expected_generation: claimed_by_b.tokens.generation,
        tokens: &fresh,
        now: expired,
    };
    assert_eq!(store.save_rotation(claimed_by_b, ok).await.unwrap(), 2);
    let reopened = store.tokens(&claimed_by_b.connection.id).await.unwrap();
    assert_eq!(reopened.access_token.expose_secret(), "new-access-token");
    assert_eq!(
        reopened.refresh_token.unwrap().expose_secret(),
        REFRESH,
        "a provider that does not rotate keeps the old refresh token"
    );
    // A verdict about tokens that were replaced since is not applied.
    let mut stale_verdict = result.clone();
    stale_verdict.started_at = claimed_by_b.started_at;
    let applied = store
        .finish_check(claimed_by_b, &stale_verdict)
        .await
        .unwrap();
    assert!(applied.stale);
    assert_eq!(applied.after, ConnectionStatus::Healthy);
}

/// A claim leases all of its due rows or none. SQLite's claim leases them one by one: one that
/// fails on its last row must leave the others free, as their caller heard it fail and checks
/// none of them; leased, each would be taken over once its lease ran out, as if a refresh had
/// been in flight.
#[tokio::test]
async fn a_claim_that_fails_on_a_row_leases_none_of_its_rows_on_sqlite() {
    use sqlx::Connection;
    use store::DueQuery;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite(dir.path());
    let store = store::open(&db, Arc::new(Keyring::from_bytes([1; 32])))
        .await
        .unwrap();
    for _ in 0..3 {
        store.add_connection(new_connection(), now()).await.unwrap();
    }
    let credwatch::config::DatabaseUrl::Sqlite(path) = &db.url else {
        unreachable!()
    };
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // The last row the claim reaches refuses its lease.
    sqlx::query(
        "CREATE TRIGGER refuse_lease BEFORE UPDATE OF lease_owner ON connections \
         WHEN NEW.lease_owner IS NOT NULL AND OLD.rowid = (SELECT MAX(rowid) FROM connections) \
         BEGIN SELECT RAISE(ABORT, 'lease refused'); END",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    let provider = "acme".parse().unwrap();
    let later = now() + TimeDelta::seconds(1);
    let due = DueQuery {
        provider: &provider,
        now: later,
        limit: 3,
        operator: None,
    };
    let until = later + TimeDelta::minutes(5);
    assert!(store.claim_due(due, &lease("a", until)).await.is_err());
    let leased: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM connections \
         WHERE lease_owner IS NOT NULL OR refresh_sent_at IS NOT NULL",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(leased, 0, "a failed claim left rows leased");

    sqlx::query("DROP TRIGGER refuse_lease")
        .execute(&mut raw)
        .await
        .unwrap();
    let due = DueQuery {
        provider: &provider,
        now: later,
        limit: 3,
        operator: None,
    };
    let claimed = store.claim_due(due, &lease("a", until)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(
        claimed
            .iter()
            .all(|c| c.connection.refresh_uncertain_since.is_none()),
        "a connection of the failed claim was taken over as if a refresh had been in flight"
    );
}

#[tokio::test]
async fn the_database_is_in_wal_mode_with_foreign_keys_even_from_a_relative_path() {
    let env = crate::helpers::TestEnv::new();
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "sqlite://state/credwatch.db",
        "sqlite://sub/../state/credwatch.db",
    );
    std::fs::write(&env.config, text).unwrap();
    // A relative config path, as in `credwatch --config config/dev.toml`.
    let run = |args: &'static [&'static str]| {
        let dir = env.dir.path().to_path_buf();
        async move {
            let out = tokio::process::Command::new(crate::helpers::BIN)
                .current_dir(dir)
                .args(["--config", "credwatch.toml"])
                .args(args)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        }
    };
    run(&["migrate"]).await;
    let id = env
        .add_connection(
            "ada@example.com",
            r#"{"access_token":"at","refresh_token":"rt"}"#,
        )
        .await;
    // A check row, to see the cascade.
    let _ = env.cli(&["check", &id]).await;
    assert_eq!(env.value("SELECT COUNT(*) FROM checks").await, "1");
    assert_eq!(env.value("PRAGMA journal_mode").await, "wal");
    env.ok(&["connection", "remove", &id]).await;
    assert_eq!(
        env.value("SELECT COUNT(*) FROM checks").await,
        "0",
        "foreign keys on: a removed connection takes its history with it"
    );
}

#[tokio::test]
async fn a_refresh_that_is_the_whole_check_stores_tokens_and_result_together_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    refreshed_and_rotated_tokens_are_stored_under_their_guards(sqlite(dir.path()), dir.path())
        .await;
}

#[tokio::test]
async fn a_refresh_that_is_the_whole_check_stores_tokens_and_result_together_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    refreshed_and_rotated_tokens_are_stored_under_their_guards(postgres().await, dir.path()).await;
}

/// The merged writes of a sweep: tokens and a healthy result in one write, refused as a whole
/// when the tokens or the status are not as claimed; and a rotation after a key rotation,
/// which the common write (same key) leaves to a second one.
async fn refreshed_and_rotated_tokens_are_stored_under_their_guards(
    db: DatabaseConfig,
    dir: &std::path::Path,
) {
    use credwatch::domain::{Category, Phase};
    use store::{CheckResult, DueQuery, Rotation, Transition};
    let old_key = dir.join("old.key");
    let new_key = dir.join("new.key");
    credwatch::crypto::generate_key_file(&old_key).unwrap();
    credwatch::crypto::generate_key_file(&new_key).unwrap();
    let old_keyring = Arc::new(Keyring::from_files(&old_key, &[]).unwrap());
    let store = store::open(&db, old_keyring.clone()).await.unwrap();
    for _ in 0..4 {
        store.add_connection(new_connection(), now()).await.unwrap();
    }
    let provider = "acme".parse().unwrap();
    let at = now() + TimeDelta::seconds(1);
    let mut claimed = store
        .claim_due(
            DueQuery {
                provider: &provider,
                now: at,
                limit: 4,
                operator: None,
            },
            &lease("w", at + TimeDelta::minutes(5)),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let mut elsewhere = claimed.pop().unwrap();
    let fresh = TokenSet::from_json(
        br#"{"access_token":"access-after-refresh","refresh_token":"refresh-after-refresh","expires_in":600}"#,
        at,
    )
    .unwrap();
    let next = at + TimeDelta::minutes(7);
    let result = |c: &store::Claimed, generation| CheckResult {
        started_at: c.started_at,
        generation,
        phase: Phase::Refresh,
        category: Category::Healthy,
        http_status: Some(200),
        latency_ms: 3,
        detail: "refreshed".into(),
        transition: Transition::Healthy,
        next_check_at: next,
        finished_at: at,
        notify_at: at,
        first_reminder_at: None,
        refresh_uncertain: Some(false),
    };
    let rotation = |c: &store::Claimed, expected| Rotation {
        expected_generation: c.tokens.generation + expected,
        tokens: &fresh,
        now: at,
    };

    // Stored: the new tokens, generation + 1, the schedule, the history row, the lease gone.
    let ok = &claimed[0];
    let applied = store
        .finish_refreshed(ok, rotation(ok, 0), &result(ok, ok.tokens.generation + 1))
        .await
        .unwrap();
    assert!(applied);
    let c = store.connection(&ok.connection.id).await.unwrap();
    assert_eq!(c.token_generation, ok.tokens.generation + 1);
    assert_eq!(c.next_check_at, next);
    assert_eq!(c.access_expires_at, Some(at + TimeDelta::seconds(600)));
    let tokens = store.tokens(&ok.connection.id).await.unwrap();
    assert_eq!(tokens.access_token.expose_secret(), "access-after-refresh");
    assert_eq!(
        tokens.refresh_token.unwrap().expose_secret(),
        "refresh-after-refresh"
    );
    let history = store.recent_checks(&ok.connection.id, 5).await.unwrap();
    assert_eq!(history[0].finished_at, Some(at));
    assert_eq!(history[0].category, Some(Category::Healthy));
    assert_eq!(history[0].latency_ms, Some(3));
    assert!(
        store
            .claim(&ok.connection.id, &lease("x", next), at)
            .await
            .is_ok_and(|o| matches!(o, store::ClaimOutcome::Claimed(_))),
        "the lease ended with the write"
    );

    // Tokens that changed meanwhile: refused, and nothing of it written.
    let stale = &claimed[1];
    let refused = store
        .finish_refreshed(stale, rotation(stale, 5), &result(stale, 99))
        .await
        .unwrap();
    assert!(!refused);
    let c = store.connection(&stale.connection.id).await.unwrap();
    assert_eq!(c.token_generation, stale.tokens.generation);
    assert_eq!(c.next_check_at, stale.connection.next_check_at);
    assert_eq!(
        store
            .tokens(&stale.connection.id)
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        ACCESS
    );
    assert!(
        store
            .recent_checks(&stale.connection.id, 5)
            .await
            .unwrap()
            .is_empty(),
        "a refused write leaves no history of its own"
    );

    // A row no longer where its claim found it (a VACUUM renumbers SQLite's rowids), here
    // pointing at another connection's: on SQLite the write goes by the claim's rowid, so it
    // is refused as a whole; the tokens then go alone, by id.
    match elsewhere.row {
        Some(_) => elsewhere.row = ok.row,
        None => assert!(
            matches!(db.url, DatabaseUrl::Postgres(_)),
            "SQLite claims say where"
        ),
    }
    let applied = store
        .finish_refreshed(
            &elsewhere,
            rotation(&elsewhere, 0),
            &result(&elsewhere, elsewhere.tokens.generation + 1),
        )
        .await
        .unwrap();
    let c = store.connection(&elsewhere.connection.id).await.unwrap();
    if elsewhere.row.is_some() {
        assert!(!applied);
        assert_eq!(c.token_generation, elsewhere.tokens.generation);
        let other = store.connection(&ok.connection.id).await.unwrap();
        assert_eq!(
            other.token_generation,
            ok.tokens.generation + 1,
            "untouched"
        );
        let generation = store
            .save_rotation(&elsewhere, rotation(&elsewhere, 0))
            .await
            .unwrap();
        assert_eq!(generation, elsewhere.tokens.generation + 1);
    } else {
        assert!(applied);
        assert_eq!(c.token_generation, elsewhere.tokens.generation + 1);
    }
    store
        .remove_connection(&elsewhere.connection.id)
        .await
        .unwrap();

    // After a key rotation a rotation re-seals under the new key: once the rows still under
    // the old key are gone, the new key alone opens the store (it refuses unknown keys).
    drop(store);
    let rotated = Arc::new(Keyring::from_files(&new_key, std::slice::from_ref(&old_key)).unwrap());
    let store = store::open(&db, rotated).await.unwrap();
    let moved = &claimed[2];
    let generation = store
        .save_rotation(moved, rotation(moved, 0))
        .await
        .unwrap();
    assert_eq!(generation, moved.tokens.generation + 1);
    for other in &claimed[..2] {
        store.remove_connection(&other.connection.id).await.unwrap();
    }
    drop(store);
    let only_new = Arc::new(Keyring::from_files(&new_key, &[]).unwrap());
    let store = store::open(&db, only_new).await.unwrap();
    assert_eq!(
        store
            .tokens(&moved.connection.id)
            .await
            .unwrap()
            .access_token
            .expose_secret(),
        "access-after-refresh"
    );
}
