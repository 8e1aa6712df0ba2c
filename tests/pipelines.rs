//! A broken connection pauses its pipelines at their last positions in the same transaction; a
//! healed one resumes them from there. The platform's own pauses are never lifted by us.

use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::peers::OidcServer;
use crate::helpers::{Db, TestEnv};

const TOKENS: &str = r#"{"access_token":"fake-at-0-0123456789","refresh_token":"fake-rt-0-0123456789","expires_in":3600}"#;
const DEAD: Reply = Reply::Json(
    400,
    r#"{"error":"invalid_grant","error_description":"revoked"}"#,
);

fn env_for(token_url: &str) -> TestEnv {
    TestEnv::with_config(&provider(token_url))
}

fn provider(token_url: &str) -> String {
    format!(
        "\n[providers.acme]\ntoken_url = \"{token_url}\"\nauthorize_url = \"http://127.0.0.1:9/authorize\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n"
    )
}

async fn pipeline(env: &TestEnv, name: &str, connections: &[&str], position: &str) -> String {
    let mut args = vec!["pipeline", "add", "--name", name, "--position", position];
    for c in connections {
        args.extend(["--connection", c]);
    }
    env.ok(&args).await
}

async fn state(env: &TestEnv, id: &str) -> Vec<String> {
    env.rows(&format!(
        "SELECT state, position, paused_at_position, paused_by FROM pipelines WHERE id = '{id}'"
    ))
    .await
    .remove(0)
}

#[tokio::test]
async fn a_revoked_grant_pauses_every_dependent_pipeline_at_its_last_position() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let grant = oidc.grant("user-1").await;
    let env = env_for(&oidc.url("/token"));
    let conn = env.add_connection("ada@example.com", &grant).await;
    let a = pipeline(&env, "CRM to warehouse", &[&conn], "cursor=17").await;
    let b = pipeline(&env, "CRM to search", &[&conn], "offset=9000").await;
    let own = pipeline(&env, "Held by the platform", &[&conn], "t=5").await;
    env.ok(&["pipeline", "pause", &own, "--reason", "maintenance"])
        .await;
    env.ok(&["pipeline", "position", &a, "cursor=18"]).await;

    reqwest::Client::new()
        .post(oidc.url("/test/accounts/user-1/revoke-app"))
        .send()
        .await
        .unwrap();
    let r = env.check(&conn).await;
    assert_eq!(r["after"], "broken", "{r}");
    let mut paused: Vec<String> = r["paused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    paused.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(paused, expected, "the platform's own pause is not ours");
    assert_eq!(
        state(&env, &a).await,
        ["paused", "cursor=18", "cursor=18", "credwatch"]
    );
    assert_eq!(
        state(&env, &b).await,
        ["paused", "offset=9000", "offset=9000", "credwatch"]
    );
    assert_eq!(state(&env, &own).await[3], "platform");

    // Positions reported while paused are kept, but do not resume the pipeline.
    env.ok(&["pipeline", "position", &a, "cursor=19"]).await;
    assert_eq!(
        state(&env, &a).await,
        ["paused", "cursor=19", "cursor=18", "credwatch"]
    );
    // The platform cannot lift a pause it did not make while the connection is broken.
    let out = env.cli(&["pipeline", "resume", &a]).await;
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is broken"));
    let events = env
        .value(&format!(
            "SELECT COUNT(*) FROM pipeline_events WHERE kind = 'paused' AND incident_id IS NOT NULL AND pipeline_id IN ('{a}', '{b}')"
        ))
        .await;
    assert_eq!(events, "2");
}

crate::on_both_backends!(
    a_healed_connection_resumes_its_pipelines_once_all_their_connections_are_healthy
);

async fn a_healed_connection_resumes_its_pipelines_once_all_their_connections_are_healthy(db: Db) {
    let crm = FakeProvider::spawn().await;
    let env = TestEnv::with_config_on(db, &provider(&crm.token_url())).await;
    let c1 = env.add_connection("ada@example.com", TOKENS).await;
    let c2 = env.add_connection("ada@example.com", TOKENS).await;
    let solo = pipeline(&env, "CRM only", &[&c1], "cursor=1").await;
    let both = pipeline(&env, "CRM and ads", &[&c1, &c2], "cursor=2").await;
    let own = pipeline(&env, "Platform paused", &[&c1], "cursor=3").await;

    crm.script([DEAD]);
    assert_eq!(env.check(&c1).await["after"], "broken");
    env.ok(&["pipeline", "pause", &own]).await;
    crm.script([Reply::Json(503, "{}")]);
    assert_eq!(env.check(&c2).await["after"], "degraded");

    // c1 heals: the pipeline that needs only c1 resumes at its position; the one that also
    // needs the degraded c2 waits for it; the platform's pause stays.
    let r = env.check(&c1).await;
    assert_eq!(
        (&r["before"], &r["after"]),
        (&"broken".into(), &"healthy".into()),
        "{r}"
    );
    assert_eq!(r["resumed"], serde_json::json!([solo]));
    assert_eq!(state(&env, &solo).await[0], "running");
    assert_eq!(state(&env, &both).await[0], "paused");
    assert_eq!(state(&env, &own).await[3], "platform");
    let r = env.check(&c2).await;
    assert_eq!(r["resumed"], serde_json::json!([both]), "{r}");

    let event = env
        .rows(&format!(
            "SELECT position, gap_started_at IS NOT NULL, gap_ended_at >= gap_started_at \
             FROM pipeline_events WHERE pipeline_id = '{solo}' AND kind = 'resumed'"
        ))
        .await;
    assert_eq!(
        event,
        [["cursor=1", "1", "1"]],
        "resumed at the paused position, with the gap"
    );
    assert_eq!(
        env.value("SELECT COUNT(*) FROM incidents WHERE closed_at IS NOT NULL")
            .await,
        "1"
    );
    // The platform lifts its own pause now that nothing is broken.
    env.ok(&["pipeline", "resume", &own]).await;
    assert_eq!(state(&env, &own).await[0], "running");
    let show = env.ok(&["pipeline", "show", &solo]).await;
    assert!(show.contains("resumed  at cursor=1, data gap"), "{show}");
}
