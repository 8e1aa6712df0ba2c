//! Faults a real provider will not produce on demand, from the fake provider: none of them may
//! break a connection, and each heals on the next good answer.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::{Db, TestEnv};

const TOKENS: &str = r#"{"access_token":"fake-at-0-0123456789","refresh_token":"fake-rt-0-0123456789","expires_in":3600}"#;

fn env_for(fake: &FakeProvider, limits: &str) -> TestEnv {
    TestEnv::with_config(&provider_config(fake, limits))
}

fn provider_config(fake: &FakeProvider, limits: &str) -> String {
    format!(
        "\n[limits]\n{limits}\n\n[providers.acme]\ntoken_url = \"{}\"\n\
         authorize_url = \"http://127.0.0.1:9/authorize\"\nclient_id = \"credwatch\"\n\
         client_secret = \"credwatch-secret\"\n",
        fake.token_url()
    )
}

#[tokio::test]
async fn provider_faults_degrade_a_connection_and_never_break_it() {
    let fake = FakeProvider::spawn().await;
    let env = env_for(&fake, "request_timeout = \"1s\"");
    let id = env.add_connection("ada@example.com", TOKENS).await;
    let faults = [
        (
            Reply::Json(500, r#"{"error":"invalid_grant"}"#),
            "transient",
        ),
        (
            Reply::Json(502, r#"{"error":"invalid_grant"}"#),
            "transient",
        ),
        (Reply::Json(503, "{}"), "transient"),
        (Reply::Html(200), "transient"),
        (Reply::Html(400), "transient"),
        (Reply::Truncated, "transient"),
        (Reply::TooMany(30), "rate_limited"),
        (Reply::Huge, "transient"),
        (Reply::Slow(Duration::from_secs(3)), "transient"),
        (
            Reply::Json(400, r#"{"error":"temporarily_confused"}"#),
            "unknown",
        ),
    ];
    for (i, (fault, category)) in faults.iter().enumerate() {
        fake.script([fault.clone()]);
        let r = env.check(&id).await;
        assert_eq!(r["category"], *category, "{fault:?}: {r}");
        assert_eq!(r["after"], "degraded", "{fault:?}: {r}");
        let failures = env
            .value("SELECT consecutive_failures FROM connections")
            .await;
        assert_eq!(failures, (i + 1).to_string(), "{fault:?}");
    }
    assert_eq!(env.value("SELECT COUNT(*) FROM incidents").await, "0");

    let r = env.check(&id).await;
    assert_eq!(
        (&r["before"], &r["after"], &r["category"]),
        (
            &serde_json::json!("degraded"),
            &serde_json::json!("healthy"),
            &serde_json::json!("healthy")
        ),
        "{r}"
    );
    assert_eq!(
        env.value("SELECT consecutive_failures FROM connections")
            .await,
        "0"
    );
    // Every attempt is in the history with what was seen.
    let history = env
        .rows("SELECT category, http_status, error FROM check_history ORDER BY id")
        .await;
    assert_eq!(history.len(), faults.len() + 1);
    assert_eq!(history[0][1], "500");
    assert!(history[3][2].contains("HTML"), "{:?}", history[3]);
    assert!(history[7][2].contains("too large"), "{:?}", history[7]);
    assert!(history[8][2].contains("timed out"), "{:?}", history[8]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeProvider::spawn().await;
    let env = env_for(&fake, "");
    let id = env.add_connection("ada@example.com", TOKENS).await;
    fake.script([Reply::TooMany(900)]);
    let before = Utc::now();
    let r = env.check(&id).await;
    assert_eq!(r["category"], "rate_limited");
    let next: DateTime<Utc> = r["next_check_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next >= before + chrono::TimeDelta::seconds(900),
        "next check {next} is before the provider's Retry-After of 15 minutes"
    );
}

#[tokio::test]
async fn a_token_the_provider_echoes_is_kept_out_of_history_and_output() {
    let fake = FakeProvider::spawn().await;
    let env = env_for(&fake, "");
    let id = env.add_connection("ada@example.com", TOKENS).await;
    fake.script([Reply::EchoToken]);
    let out = env.ok(&["check", &id]).await;
    assert!(out.contains("[redacted]"), "{out}");
    assert!(!out.contains("fake-rt-0-0123456789"), "{out}");
    let stored = env.value("SELECT error FROM check_history").await;
    assert!(
        stored.contains("[redacted]") && !stored.contains("fake-rt-0"),
        "{stored}"
    );
}

#[tokio::test]
async fn a_provider_that_is_down_degrades_and_heals_when_it_is_back() {
    let fake = FakeProvider::spawn().await;
    let env = env_for(&fake, "request_timeout = \"2s\"");
    let id = env.add_connection("ada@example.com", TOKENS).await;
    let port = fake.stop().await;
    let r = env.check(&id).await;
    assert_eq!(
        (&r["category"], &r["after"]),
        (&"transient".into(), &"degraded".into()),
        "{r}"
    );
    let fake = FakeProvider::spawn_on(port).await;
    let r = env.check(&id).await;
    assert_eq!(r["after"], "healthy", "{r}");
    assert_eq!(fake.token_calls(), 1);
}

crate::on_both_backends!(two_concurrent_checks_of_one_connection_make_a_single_refresh_call);

async fn two_concurrent_checks_of_one_connection_make_a_single_refresh_call(db: Db) {
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Slow(Duration::from_secs(3)));
    let env = TestEnv::with_config_on(
        db,
        &provider_config(&fake, "request_timeout = \"10s\"\nlease = \"60s\""),
    )
    .await;
    let id = env.add_connection("ada@example.com", TOKENS).await;
    let args = ["check", id.as_str(), "--json"];
    let (a, b) = tokio::join!(env.cli(&args), env.cli(&args));
    let outputs: Vec<serde_json::Value> = [a, b]
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice(&o.stdout).expect("one JSON report")
        })
        .collect();
    assert_eq!(fake.token_calls(), 1, "{outputs:?}");
    let skipped: Vec<_> = outputs
        .iter()
        .filter(|r| r["outcome"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{outputs:?}");
    assert!(
        skipped[0]["why"]
            .as_str()
            .unwrap()
            .contains("already being checked"),
        "{outputs:?}"
    );
    assert_eq!(
        env.value("SELECT token_generation FROM connections").await,
        "2"
    );
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE lease_owner IS NOT NULL")
            .await,
        "0",
        "the lease ends with the check"
    );
}
