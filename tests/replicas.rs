//! Several daemons on one PostgreSQL share the work: with oidc-provider rotating refresh tokens
//! and revoking a grant whose old token is presented again, a double refresh would show as a
//! broken connection. A replica killed with its claims in flight loses nothing.

use std::sync::Arc;
use std::time::Duration;

use credwatch::config::{DatabaseConfig, DatabaseUrl};
use credwatch::crypto::Keyring;
use credwatch::store::{self, NewConnection};
use credwatch::tokens::TokenSet;

use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::peers::{OidcServer, free_port};
use crate::helpers::{Db, TestEnv, wait_until};

const CONNECTIONS: usize = 200;
const REVOKED: usize = 4;

fn config(token_url: &str, port: u16) -> String {
    format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\nbatch_size = 10\ncatch_up = \"2s\"\n\n\
         [limits]\nrequest_timeout = \"3s\"\nlease = \"10s\"\n\n\
         [notices]\ndigest_window = \"1s\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}/\"\n\n\
         [providers.acme]\ntoken_url = \"{token_url}\"\nauthorize_url = \"http://127.0.0.1:9/a\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n\
         rotates_refresh_tokens = true\nmax_concurrent = 8\nrequests_per_second = 500\n"
    )
}

#[tokio::test]
async fn three_replicas_refresh_each_connection_once_per_due_time_and_survive_a_kill() {
    // Tokens live 8 s: each connection comes due about every 5.5 s during the test.
    let oidc = OidcServer::spawn(serde_json::json!({"ttl": {"AccessToken": 8}})).await;
    let env =
        TestEnv::with_config_on(Db::Postgres, &config(&oidc.url("/token"), free_port())).await;
    let db = DatabaseConfig {
        url: DatabaseUrl::Postgres(env.postgres.clone().expect("postgres").into()),
        max_connections: 4,
    };
    let keyring = Arc::new(Keyring::from_files(&env.path("credwatch.key"), &[]).unwrap());
    let store = store::open(&db, keyring).await.unwrap();
    for i in 0..CONNECTIONS {
        let account = format!("user-{i}");
        let grant = oidc.grant(&account).await;
        let tokens = TokenSet::from_json(grant.as_bytes(), chrono::Utc::now()).unwrap();
        let new = NewConnection {
            provider: "acme".parse().unwrap(),
            name: format!("source {i}"),
            owner: format!("owner-{i}@example.com").parse().unwrap(),
            account: Some(account),
            tokens,
            external_id: None,
            metadata: None,
            credential_kind: "oauth",
        };
        store.add_connection(new, chrono::Utc::now()).await.unwrap();
    }
    for i in 0..REVOKED {
        reqwest::Client::new()
            .post(oidc.url(&format!("/test/accounts/user-{i}/revoke-app")))
            .send()
            .await
            .unwrap();
    }

    let mut replicas = vec![env.spawn().await];
    for _ in 0..2 {
        let other = env.path(&format!("replica-{}.toml", replicas.len()));
        std::fs::write(&other, replica_config(&env, free_port())).unwrap();
        replicas.push(env.spawn_with(&other).await);
    }
    // A fourth replica whose calls to the provider hang: killed with its refreshes in flight.
    // Its connections are taken over; those whose refresh had gone out are first left to it
    // for two leases (it might only be stalled, and come back with rotated tokens), then
    // refreshed: its provider rotated nothing, so none of them breaks.
    let hang = FakeProvider::spawn().await;
    hang.set_default(Reply::Slow(Duration::from_secs(30)));
    let victim_config = env.path("victim.toml");
    let text = replica_config(&env, free_port()).replace(&oidc.url("/token"), &hang.token_url());
    std::fs::write(&victim_config, &text).unwrap();
    let victim = env.spawn_with(&victim_config).await;
    let mine = leased_by(victim.pid());
    wait_until(
        "the victim to hold claims",
        Duration::from_secs(20),
        || async {
            env.value(&format!("SELECT COUNT(*) FROM connections WHERE {mine}"))
                .await
                != "0"
        },
    )
    .await;
    let taken: Vec<String> = env
        .rows(&format!("SELECT id FROM connections WHERE {mine}"))
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    victim.signal(libc::SIGKILL);
    let killed_at = chrono::Utc::now().timestamp_millis();

    // Its connections are checked by the others once its leases (10 s) have expired, and every
    // connection goes through several due times.
    wait_until("the victim's connections taken over", Duration::from_secs(60), || async {
        let rows = env
            .rows(&format!(
                "SELECT COUNT(*) FROM connections WHERE id IN ('{}') AND (last_check_at IS NULL OR last_check_at < {killed_at})",
                taken.join("','")
            ))
            .await;
        rows[0][0] == "0"
    })
    .await;
    wait_until(
        "three rounds of refreshes",
        Duration::from_secs(60),
        || async {
            env.value("SELECT MIN(token_generation) FROM connections WHERE status = 'healthy'")
                .await
                .parse::<i64>()
                .unwrap()
                >= 4
        },
    )
    .await;
    for r in &replicas {
        r.signal(libc::SIGTERM);
    }
    for r in replicas {
        assert_eq!(r.wait(Duration::from_secs(30)).await.0, Some(0));
    }

    // Only the revoked grants broke; nothing else was ever anything but healthy.
    let statuses = env
        .rows("SELECT status, COUNT(*) FROM connections GROUP BY status ORDER BY status")
        .await;
    assert_eq!(
        statuses,
        [
            ["broken".to_owned(), REVOKED.to_string()],
            ["healthy".to_owned(), (CONNECTIONS - REVOKED).to_string()]
        ]
    );
    let bad = env
        .rows(
            "SELECT c.name, k.category, k.error FROM check_history k JOIN connections c ON c.id = k.connection_id \
             WHERE k.finished_at IS NOT NULL AND k.category != 'healthy' AND c.status != 'broken' \
             AND k.error NOT LIKE 'a refresh sent at % by a worker that then stopped %'",
        )
        .await;
    assert!(
        bad.is_empty(),
        "checks that failed on healthy grants: {bad:?}"
    );
    // Exactly once per due time: no token generation was checked to a verdict twice (a wait
    // for the killed replica decides nothing).
    let twice = env
        .rows(
            "SELECT connection_id, token_generation, COUNT(*) FROM checks WHERE finished_at IS NOT NULL \
             AND error NOT LIKE 'a refresh sent at % by a worker that then stopped %' \
             GROUP BY connection_id, token_generation HAVING COUNT(*) > 1",
        )
        .await;
    assert!(
        twice.is_empty(),
        "checked twice at one generation: {twice:?}"
    );
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE lease_owner IS NOT NULL")
            .await,
        "0",
        "every claim ended, the dead replica's included"
    );
    // Every notice once: one e-mail per broken connection, whichever replica sent it.
    wait_until("the notices", Duration::from_secs(10), || async {
        env.value("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
            .await
            == REVOKED.to_string()
    })
    .await;
    let mails = crate::helpers::read_dir_names(&env.path("mail"));
    assert_eq!(
        mails.iter().filter(|n| n.ends_with(".eml")).count(),
        REVOKED,
        "{mails:?}"
    );
}

/// The installation's config with its own HTTP port: another replica on the same database.
fn replica_config(env: &TestEnv, port: u16) -> String {
    replica_config_text(&std::fs::read_to_string(&env.config).unwrap(), port)
}

pub fn replica_config_text(text: &str, port: u16) -> String {
    let mut section = String::new();
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.trim().to_owned();
        }
        let line = match (section.as_str(), line) {
            ("[http]", l) if l.starts_with("listen") => format!("listen = \"127.0.0.1:{port}\""),
            ("[http]", l) if l.starts_with("public_base_url") => {
                format!("public_base_url = \"http://127.0.0.1:{port}/\"")
            }
            ("[api]", l) if l.starts_with("listen") => {
                format!("listen = \"127.0.0.1:{}\"", free_port())
            }
            (_, l) => l.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A replica frozen past its lease (a paused VM, a stalled process) wakes up with claims whose
/// connections another replica has since refreshed. Its calls must not go out: presenting the
/// rotated-away refresh tokens would make the provider revoke those grants.
/// The condition on `connections` that holds for the rows the daemon with process id `pid`
/// leased (leases name their instance by number; an instance's name holds its pid).
fn leased_by(pid: i32) -> String {
    format!("lease_owner IN (SELECT id FROM instances WHERE name LIKE '%:{pid}:%')")
}

#[tokio::test]
async fn a_replica_stalled_past_its_lease_calls_no_provider_on_waking() {
    let oidc = OidcServer::spawn(serde_json::json!({"ttl": {"AccessToken": 8}})).await;
    // One refresh a second, so a replica's claims wait their turn; a 9 s lease claims a few.
    // Requests may take 2 s: a refresh that times out is retried only a minute later, past
    // this test's patience, and a machine busy with the whole suite answers slowly.
    let config = |port: u16| {
        format!(
            "\n[schedule]\nsweep = \"* * * * * *\"\n\n\
             [limits]\nrequest_timeout = \"2s\"\nlease = \"9s\"\n\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}/\"\n\n\
             [providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:9/a\"\n\
             client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n\
             rotates_refresh_tokens = true\nrequests_per_second = 1\n",
            oidc.url("/token")
        )
    };
    let env = TestEnv::with_config_on(Db::Postgres, &config(free_port())).await;
    for i in 0..6 {
        env.add_connection(
            &format!("owner-{i}@example.com"),
            &oidc.grant(&format!("user-{i}")).await,
        )
        .await;
    }
    // All due at once: the first replica claims them all, and most wait for their turn.
    env.rows("UPDATE connections SET next_check_at = 0 RETURNING id")
        .await;
    let mut first = env.spawn().await;
    let mine = leased_by(first.pid());
    // Frozen just after one of its refreshes was stored, so that none is in flight: a refresh
    // frozen between the provider's answer and the commit is a lost rotation, another test's
    // matter, and the other replica rightly leaves it alone a while.
    let stored = std::cell::Cell::new(0);
    wait_until(
        "claims waiting for their turn, just after a refresh was stored",
        Duration::from_secs(30),
        || async {
            let sum: i64 = env
                .value("SELECT CAST(SUM(token_generation) AS BIGINT) FROM connections")
                .await
                .parse()
                .unwrap();
            let just_stored = stored.get() != 0 && sum > stored.get();
            stored.set(sum);
            let waiting: u32 = env
                .value(&format!("SELECT COUNT(*) FROM connections WHERE {mine}"))
                .await
                .parse()
                .unwrap();
            just_stored && waiting >= 2
        },
    )
    .await;
    first.signal(libc::SIGSTOP);
    let waiting: Vec<String> = env
        .rows(&format!("SELECT id FROM connections WHERE {mine}"))
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let other = env.path("other.toml");
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&other, replica_config_text(&text, free_port())).unwrap();
    let second = env.spawn_with(&other).await;
    // The second replica takes the frozen one's connections over once its leases end.
    let before: Vec<String> = env
        .rows(&format!(
            "SELECT token_generation FROM connections WHERE id IN ('{}') ORDER BY id",
            waiting.join("','")
        ))
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    // About 20 s alone (the leases' end, then one refresh a second); far more when the whole
    // suite shares the machine.
    wait_until(
        "the frozen replica's connections refreshed by the other",
        Duration::from_secs(90),
        || async {
            let now: Vec<String> = env
                .rows(&format!(
                    "SELECT token_generation FROM connections WHERE id IN ('{}') ORDER BY id",
                    waiting.join("','")
                ))
                .await
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            now.iter()
                .zip(&before)
                .all(|(n, b)| n.parse::<i64>().unwrap() > b.parse::<i64>().unwrap())
        },
    )
    .await;
    first.signal(libc::SIGCONT);
    first
        .log_until(
            "the woken replica to finish its sweep",
            Duration::from_secs(20),
            |lines| {
                lines.iter().any(|l| {
                    l.contains("sweep finished")
                        && l.contains("skipped=")
                        && !l.contains("skipped=0")
                })
            },
        )
        .await;
    // A few more rounds: a grant revoked by a replayed token would break now.
    let floor: i64 = env
        .value("SELECT MAX(token_generation) FROM connections")
        .await
        .parse()
        .unwrap();
    wait_until(
        "two more rounds of refreshes",
        Duration::from_secs(60),
        || async {
            env.value("SELECT MIN(token_generation) FROM connections")
                .await
                .parse::<i64>()
                .unwrap()
                >= floor + 2
        },
    )
    .await;
    assert_eq!(
        env.rows("SELECT status, COUNT(*) FROM connections GROUP BY status")
            .await,
        [["healthy".to_owned(), "6".to_owned()]]
    );
    assert_eq!(env.value("SELECT COUNT(*) FROM incidents").await, "0");
    for d in [first, second] {
        d.signal(libc::SIGTERM);
        assert_eq!(d.wait(Duration::from_secs(30)).await.0, Some(0));
    }
}
