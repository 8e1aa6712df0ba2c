//! Health checks against the real oidc-provider: rotation with reuse detection, revocation,
//! expiry, a wrong client secret, and a provider that hangs.

use std::time::Duration;

use crate::helpers::peers::OidcServer;
use crate::helpers::{Db, TestEnv, wait_until};

async fn env_for(db: Db, oidc: &OidcServer, secret: &str, extra: &str) -> TestEnv {
    TestEnv::with_config_on(
        db,
        &format!(
            "{extra}\n[providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"{}\"\n\
         revocation_url = \"{}\"\nintrospection_url = \"{}\"\nprobe_url = \"{}\"\n\
         client_id = \"credwatch\"\n\
         client_secret = \"{secret}\"\nscopes = \"openid email offline_access\"\n\
         rotates_refresh_tokens = true\n",
            oidc.url("/token"),
            oidc.url("/auth"),
            oidc.url("/token/revocation"),
            oidc.url("/token/introspection"),
            oidc.url("/me"),
        ),
    )
    .await
}

struct Setup {
    oidc: OidcServer,
    env: TestEnv,
    /// The token response of a real authorization-code grant.
    grant: String,
    id: String,
}

/// oidc-provider with `options`, a grant for `account`, and a connection to it in a fresh install.
async fn setup(options: serde_json::Value, account: &str, secret: &str, extra: &str) -> Setup {
    setup_on(Db::Sqlite, options, account, secret, extra).await
}

async fn setup_on(
    db: Db,
    options: serde_json::Value,
    account: &str,
    secret: &str,
    extra: &str,
) -> Setup {
    let oidc = OidcServer::spawn(options).await;
    let grant = oidc.grant(account).await;
    let env = env_for(db, &oidc, secret, extra).await;
    let id = env.add_connection("ada@example.com", &grant).await;
    Setup {
        oidc,
        env,
        grant,
        id,
    }
}

fn refresh_token(grant: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(grant).unwrap();
    v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

async fn generation(env: &TestEnv) -> u64 {
    env.value("SELECT token_generation FROM connections")
        .await
        .parse()
        .unwrap()
}

crate::on_both_backends!(
    a_fresh_grant_stays_healthy_over_many_refreshes_with_every_rotation_persisted
);

async fn a_fresh_grant_stays_healthy_over_many_refreshes_with_every_rotation_persisted(db: Db) {
    let Setup {
        oidc: _oidc,
        env,
        grant,
        id,
    } = setup_on(db, serde_json::json!({}), "user-1", "credwatch-secret", "").await;
    // oidc-provider rotates on every refresh and revokes the whole grant when a rotated-away
    // token is presented: one rotation not persisted and the next check would find it broken.
    for round in 0..6 {
        let r = env.check(&id).await;
        assert_eq!(
            (&r["category"], &r["after"], &r["phase"]),
            (&"healthy".into(), &"healthy".into(), &"probe".into()),
            "round {round}: {r}"
        );
        assert_eq!(generation(&env).await, round + 2);
    }
    let output = env.ok(&["check", &id]).await;
    let raw = refresh_token(&grant);
    assert!(!output.contains(&raw), "no token in the output");
    let history = env
        .rows("SELECT category, http_status FROM check_history")
        .await;
    assert_eq!(history.len(), 7);
    assert!(
        history.iter().all(|h| h == &["healthy", "200"]),
        "{history:?}"
    );
}

crate::on_both_backends!(the_daemon_refreshes_ahead_of_expiry_and_releases_its_leases_on_sigterm);

async fn the_daemon_refreshes_ahead_of_expiry_and_releases_its_leases_on_sigterm(db: Db) {
    let Setup {
        oidc: _oidc,
        env,
        grant: _,
        id: _,
    } = setup_on(
        db,
        serde_json::json!({"ttl": {"AccessToken": 6}}),
        "user-2",
        "credwatch-secret",
        "[schedule]\nsweep = \"* * * * * *\"\n",
    )
    .await;
    let daemon = env.spawn().await;
    // Due at once, then again at about 2/3 of the 6-second access token lifetime.
    wait_until(
        "three refreshes by the daemon",
        Duration::from_secs(40),
        || async { generation(&env).await >= 4 },
    )
    .await;
    assert_eq!(env.value("SELECT status FROM connections").await, "healthy");
    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE lease_owner IS NOT NULL")
            .await,
        "0"
    );
}

#[tokio::test]
async fn a_grant_revoked_through_rfc_7009_becomes_broken() {
    let Setup {
        oidc,
        env,
        grant,
        id,
    } = setup(serde_json::json!({}), "user-3", "credwatch-secret", "").await;
    let revoked = reqwest::Client::new()
        .post(oidc.url("/token/revocation"))
        .basic_auth("credwatch", Some("credwatch-secret"))
        .form(&[
            ("token", refresh_token(&grant).as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let r = env.check(&id).await;
    assert_broken(&env, &r).await;
}

crate::on_both_backends!(a_user_revoking_the_app_at_the_provider_breaks_the_connection);

async fn a_user_revoking_the_app_at_the_provider_breaks_the_connection(db: Db) {
    let Setup {
        oidc,
        env,
        grant: _,
        id,
    } = setup_on(db, serde_json::json!({}), "user-4", "credwatch-secret", "").await;
    assert_eq!(env.check(&id).await["after"], "healthy");
    let revoked = reqwest::Client::new()
        .post(oidc.url("/test/accounts/user-4/revoke-app"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let r = env.check(&id).await;
    assert_broken(&env, &r).await;
    // Broken waits for its owner: no immediate retry.
    let next: chrono::DateTime<chrono::Utc> = r["next_check_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next > chrono::Utc::now() + chrono::TimeDelta::hours(12),
        "{r}"
    );
}

#[tokio::test]
async fn an_expired_refresh_token_becomes_broken() {
    let Setup {
        oidc,
        env,
        grant,
        id,
    } = setup(
        serde_json::json!({"ttl": {"RefreshToken": 2}}),
        "user-5",
        "credwatch-secret",
        "",
    )
    .await;
    let token = refresh_token(&grant);
    // The provider itself says when the token is dead (RFC 7662 introspection).
    wait_until(
        "the provider to report the refresh token expired",
        Duration::from_secs(20),
        || {
            let (url, token) = (oidc.url("/token/introspection"), token.clone());
            async move { introspect(&url, &token).await["active"] == false }
        },
    )
    .await;
    let r = env.check(&id).await;
    assert_broken(&env, &r).await;
}

async fn assert_broken(env: &TestEnv, r: &serde_json::Value) {
    assert_eq!(r["after"], "broken", "{r}");
    assert!(
        r["category"] == "revoked" || r["category"] == "expired",
        "{r}"
    );
    assert_eq!(r["http_status"], 400, "{r}");
    let row = env
        .rows("SELECT status, reason FROM connections")
        .await
        .remove(0);
    assert_eq!(row[0], "broken");
    assert_eq!(row[1], r["category"].as_str().unwrap());
    assert_eq!(
        env.value("SELECT COUNT(*) FROM incidents WHERE closed_at IS NULL")
            .await,
        "1",
        "one open incident"
    );
}

#[tokio::test]
async fn a_wrong_client_secret_alerts_the_operator_once_and_breaks_no_connection() {
    let Setup {
        oidc: _oidc,
        env,
        grant: _,
        id,
    } = setup(
        serde_json::json!({}),
        "user-6",
        "not-the-secret",
        "[schedule]\nsweep = \"* * * * * *\"\n",
    )
    .await;
    let r = env.check(&id).await;
    assert_eq!(r["category"], "client_misconfigured", "{r}");
    assert_eq!(
        (&r["before"], &r["after"]),
        (&"healthy".into(), &"healthy".into())
    );
    assert_eq!(
        env.value(
            "SELECT COUNT(*) FROM provider_alerts WHERE closed_at IS NULL AND provider = 'acme'"
        )
        .await,
        "1"
    );

    // The daemon holds the provider back: its first sweep makes one trial check, the next
    // sweeps none, and the alert is not raised again.
    let mut daemon = env.spawn().await;
    daemon
        .log_until("four sweeps", Duration::from_secs(30), |log| {
            log.iter().filter(|l| l.contains("sweep finished")).count() >= 4
        })
        .await;
    assert_eq!(env.value("SELECT COUNT(*) FROM checks").await, "2");
    assert_eq!(env.value("SELECT COUNT(*) FROM provider_alerts").await, "1");
    assert_eq!(env.value("SELECT status FROM connections").await, "healthy");
    assert_eq!(env.value("SELECT COUNT(*) FROM incidents").await, "0");
    daemon.signal(libc::SIGTERM);
    daemon.wait(Duration::from_secs(30)).await;

    // The operator fixes the secret and restarts: the trial check gets through at once.
    let fixed = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("not-the-secret", "credwatch-secret");
    std::fs::write(&env.config, fixed).unwrap();
    let mut daemon = env.spawn().await;
    daemon
        .log_until(
            "the provider to be accepted again",
            Duration::from_secs(30),
            |log| {
                log.iter()
                    .any(|l| l.contains("accepts our OAuth client again"))
            },
        )
        .await;
    wait_until("a healthy check", Duration::from_secs(10), || async {
        env.value("SELECT category FROM check_history ORDER BY id DESC LIMIT 1")
            .await
            == "healthy"
    })
    .await;
    assert_eq!(
        env.value("SELECT COUNT(*) FROM provider_alerts WHERE closed_at IS NULL")
            .await,
        "0"
    );
    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let alerts = log
        .iter()
        .filter(|l| l.contains("refuses our OAuth client"))
        .count();
    assert_eq!(alerts, 0, "no new alert after the fix");
}

#[tokio::test]
async fn a_hanging_provider_degrades_and_heals_when_it_answers_again() {
    // Without rotation (Google- and Microsoft-style) the old refresh token still works.
    let Setup {
        oidc,
        env,
        grant: _,
        id,
    } = setup(
        serde_json::json!({"rotateRefreshToken": false}),
        "user-7",
        "credwatch-secret",
        "[limits]\nrequest_timeout = \"1s\"\n",
    )
    .await;
    oidc.signal(libc::SIGSTOP);
    let r = env.check(&id).await;
    oidc.signal(libc::SIGCONT);
    assert_eq!(
        (&r["category"], &r["after"]),
        (&"transient".into(), &"degraded".into()),
        "{r}"
    );
    assert!(r["detail"].as_str().unwrap().contains("timed out"), "{r}");
    let r = env.check(&id).await;
    assert_eq!(
        (&r["before"], &r["after"]),
        (&"degraded".into(), &"healthy".into()),
        "{r}"
    );

    drop(oidc);
    let r = env.check(&id).await;
    assert_eq!(
        (&r["category"], &r["after"]),
        (&"transient".into(), &"degraded".into()),
        "a provider that is gone: {r}"
    );
}

/// A rotating provider that hangs after reading our refresh request rotates the token when it
/// wakes up, and the answer never reaches us: the grant is lost, and we say why. The timeout
/// itself never breaks anything, and the old token is not presented again (which would look
/// like theft to the provider and revoke the whole grant).
#[tokio::test]
async fn a_rotation_lost_in_a_hang_is_reported_honestly() {
    let Setup {
        oidc,
        env,
        grant,
        id,
    } = setup(
        serde_json::json!({}),
        "user-8",
        "credwatch-secret",
        "[limits]\nrequest_timeout = \"1s\"\n",
    )
    .await;
    oidc.signal(libc::SIGSTOP);
    let r = env.check(&id).await;
    oidc.signal(libc::SIGCONT);
    assert_eq!(r["after"], "degraded", "{r}");
    let token = refresh_token(&grant);
    wait_until(
        "the woken provider to rotate the refresh token",
        Duration::from_secs(20),
        || {
            let (url, token) = (oidc.url("/token/introspection"), token.clone());
            async move { introspect(&url, &token).await["active"] == false }
        },
    )
    .await;
    let r = env.check(&id).await;
    assert_eq!(
        (&r["category"], &r["after"]),
        (&"rotation_lost".into(), &"broken".into()),
        "{r}"
    );
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("now reports the refresh token inactive"),
        "{r}"
    );
}

async fn introspect(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .basic_auth("credwatch", Some("credwatch-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
