//! Webhooks, verified by a receiver that is not ours (the `standardwebhooks` package): the
//! whole loop in order, a receiver that fails and recovers, a kill mid-delivery.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::Platform;
use crate::helpers::receiver::{self, Receiver};
use crate::helpers::{Db, TestEnv, wait_until};
use crate::reauth;

/// Waits until the daemon has seen its endpoint: it gets the events written from then on.
async fn endpoint_known(env: &TestEnv) {
    wait_until("the endpoint known", Duration::from_secs(30), || async {
        env.value("SELECT COUNT(*) FROM webhook_endpoints").await == "1"
    })
    .await;
}

/// The types the receiver got, in arrival order.
fn types(received: &[(String, Value)]) -> Vec<String> {
    received
        .iter()
        .map(|(_, b)| b["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

crate::on_both_backends!(a_revoked_grant_and_its_reauthorization_reach_the_receiver_in_order);

async fn a_revoked_grant_and_its_reauthorization_reach_the_receiver_in_order(db: Db) {
    let receiver = Receiver::spawn().await;
    let hooks = receiver::config("platform", &receiver.url(), &[]);
    let (oidc, env, base) = reauth::install(db, None, &hooks).await;
    let _daemon = env.spawn().await;
    endpoint_known(&env).await;
    let conn = env
        .add_connection("ada@example.com", &oidc.grant("user-1").await)
        .await;
    let pipeline = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "CRM",
            "--connection",
            &conn,
            "--position",
            "cursor=17",
        ])
        .await;
    reauth::revoke_app(&oidc, "user-1").await;
    wait_until(
        "the break and the pause delivered",
        Duration::from_secs(40),
        || async {
            let got = types(&receiver.received().await);
            got.contains(&"pipeline.paused".to_owned())
        },
    )
    .await;

    let link = env.ok(&["connection", "reauth-link", &conn]).await;
    let authorize = reauth::start(link.trim()).await;
    let callback = reauth::through_provider(&authorize, &base).await;
    let (status, page) = reauth::get(&callback).await;
    assert_eq!(status, 200, "{page}");
    wait_until("the resume delivered", Duration::from_secs(30), || async {
        types(&receiver.received().await).contains(&"pipeline.resumed".to_owned())
    })
    .await;

    let received = receiver.received().await;
    let about: Vec<&(String, Value)> = received
        .iter()
        .filter(|(_, b)| b["data"]["connection"] == conn.as_str())
        .collect();
    let order: Vec<&str> = about
        .iter()
        .map(|(_, b)| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "connection.created",
            "connection.broken",
            "pipeline.paused",
            "connection.reauthorized",
            "pipeline.resumed"
        ],
        "{received:?}"
    );
    let paused = &about[2].1["data"];
    let resumed = &about[4].1["data"];
    assert_eq!(paused["pipeline"], pipeline.trim());
    assert_eq!(paused["position"], "cursor=17");
    assert_eq!(resumed["resume_from"], "cursor=17", "the same position");
    assert_eq!(about[1].1["data"]["category"], "revoked");
    // Each once, ids increasing, the webhook-id the event's id.
    for pair in about.windows(2) {
        assert!(pair[0].0 < pair[1].0, "{about:?}");
    }
    for (id, body) in &about {
        assert_eq!(body["id"], id.as_str());
        assert!(!body.to_string().contains("access_token"), "{body}");
    }

    // The receiver's library rejects a body changed on the way, with the same signature.
    let sent = &receiver.deliveries().await[0];
    let headers = [
        ("webhook-id", sent["id"].as_str().unwrap()),
        ("webhook-timestamp", sent["timestamp"].as_str().unwrap()),
        ("webhook-signature", sent["signature"].as_str().unwrap()),
    ];
    let raw = sent["raw"].as_str().unwrap();
    assert!(
        receiver.verifies(raw.as_bytes(), &headers).await,
        "the original verifies"
    );
    let tampered = raw.replace("\"type\":\"", "\"type\":\"x");
    assert!(!receiver.verifies(tampered.as_bytes(), &headers).await);
}

#[tokio::test]
async fn a_receiver_that_fails_then_hangs_gets_everything_in_order_once_it_recovers() {
    let receiver = Receiver::spawn().await;
    receiver.set_mode("fail").await;
    let env = TestEnv::with_config(&format!(
        "{}{}",
        crate::api::ACME,
        receiver::config("platform", &receiver.url(), &[])
    ));
    let _daemon = env.spawn().await;
    endpoint_known(&env).await;
    let platform = Platform::new(&env);
    let mut connections = Vec::new();
    for n in 0..3 {
        let (_, c) = platform
            .call(
                "POST",
                "/v1/connections",
                Some(json!({"provider": "acme", "name": format!("CRM {n}"), "owner": "a@example.com",
                    "tokens": {"access_token": format!("at-{n}-0123456789")}, "allow_unknown_account": true})),
            )
            .await;
        let id = c["id"].as_str().unwrap().to_owned();
        let (_, p) = platform
            .call(
                "POST",
                "/v1/pipelines",
                Some(json!({"name": "P", "connections": [id]})),
            )
            .await;
        let pipe = p["id"].as_str().unwrap().to_owned();
        platform
            .call("POST", &format!("/v1/pipelines/{pipe}/pause"), None)
            .await;
        platform
            .call("POST", &format!("/v1/pipelines/{pipe}/resume"), None)
            .await;
        connections.push((id, pipe));
    }
    wait_until("failed attempts", Duration::from_secs(30), || async {
        receiver.hits().await >= 2
    })
    .await;
    receiver.set_mode("hang").await;
    let hits = receiver.hits().await;
    // What waits for its retry is due now: the receiver hangs, the attempts time out.
    env.ok(&["webhooks", "retry", "platform"]).await;
    wait_until("an attempt that hangs", Duration::from_secs(30), || async {
        receiver.hits().await > hits
    })
    .await;
    let status = env.ok(&["webhooks", "status"]).await;
    assert!(
        status.contains("platform") && status.contains("pending"),
        "{status}"
    );
    receiver.set_mode("ok").await;
    env.ok(&["webhooks", "retry", "platform"]).await;
    wait_until("everything delivered", Duration::from_secs(60), || async {
        receiver.received().await.len() >= 9
    })
    .await;
    let received = receiver.received().await;
    assert_eq!(received.len(), 9, "each event once: {:?}", types(&received));
    // Pipeline events go with their own pipeline's key: in order within it.
    for (conn, pipe) in &connections {
        let of_conn: Vec<String> = types(
            &received
                .iter()
                .filter(|(_, b)| b["data"]["connection"] == conn.as_str())
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(of_conn, ["connection.created"]);
        let of_pipe: Vec<String> = types(
            &received
                .iter()
                .filter(|(_, b)| b["data"]["pipeline"] == pipe.as_str())
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            of_pipe,
            ["pipeline.paused", "pipeline.resumed"],
            "{received:?}"
        );
    }
    let ids: std::collections::BTreeSet<&String> = received.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 9, "no event twice");
}

#[tokio::test]
async fn a_daemon_killed_mid_delivery_loses_nothing_and_redelivers_under_the_same_id() {
    let receiver = Receiver::spawn().await;
    receiver.set_mode("hang").await;
    let env = TestEnv::with_config(&format!(
        "[limits]\nrequest_timeout = \"3s\"\nlease = \"10s\"\n{}{}",
        crate::api::ACME,
        receiver::config("platform", &receiver.url(), &[])
            .replace("timeout = \"2s\"", "timeout = \"20s\"")
    ));
    let daemon = env.spawn().await;
    endpoint_known(&env).await;
    let platform = Platform::new(&env);
    let (_, c) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(
                json!({"provider": "acme", "name": "CRM", "owner": "a@example.com",
                "tokens": {"access_token": "at-0123456789"}, "allow_unknown_account": true}),
            ),
        )
        .await;
    let conn = c["id"].as_str().unwrap().to_owned();
    wait_until(
        "the delivery in flight",
        Duration::from_secs(30),
        || async { receiver.hits().await >= 1 },
    )
    .await;
    daemon.signal(libc::SIGKILL);
    let _ = daemon.wait(Duration::from_secs(10)).await;
    // While it is down, more happens (the command line writes events too).
    let pipeline = env
        .ok(&["pipeline", "add", "--name", "P", "--connection", &conn])
        .await;
    env.ok(&["pipeline", "pause", pipeline.trim()]).await;
    receiver.set_mode("ok").await;
    let _again = env.spawn().await;
    wait_until("both events delivered", Duration::from_secs(60), || async {
        receiver.received().await.len() >= 2
    })
    .await;
    let mut received = receiver.received().await;
    // Two keys (the connection; the pipeline, paused by the platform): no order between them.
    received.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        types(&received),
        ["connection.created", "pipeline.paused"],
        "{received:?}"
    );
    let events: Vec<Value> = env
        .ok(&["events", "list"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        received[0].0,
        events[0]["id"].as_str().unwrap(),
        "the same webhook-id"
    );
    assert!(
        receiver.hits().await >= 3,
        "the first attempt was made, and made again"
    );
}

#[tokio::test]
async fn three_replicas_deliver_each_event_once() {
    let receiver = Receiver::spawn().await;
    let env = TestEnv::with_config_on(
        Db::Postgres,
        &format!(
            "{}{}",
            crate::api::ACME,
            receiver::config("platform", &receiver.url(), &[])
        ),
    )
    .await;
    let text = std::fs::read_to_string(&env.config).unwrap();
    let mut daemons = vec![env.spawn().await];
    let mut platforms = vec![Platform::new(&env)];
    for n in 0..2 {
        let other = env.path(&format!("replica-{n}.toml"));
        let port = crate::helpers::peers::free_port();
        std::fs::write(&other, crate::replicas::replica_config_text(&text, port)).unwrap();
        daemons.push(env.spawn_with(&other).await);
        platforms.push(Platform::at(&other));
    }
    endpoint_known(&env).await;
    // Events written through every replica at once.
    let writes: Vec<_> = (0..30)
        .map(|n| {
            let platform = platforms[n % 3].clone();
            tokio::spawn(async move {
                let body = json!({"provider": "acme", "name": format!("CRM {n}"),
                    "owner": "a@example.com", "tokens": {"access_token": format!("at-{n}-0123456789")},
                    "allow_unknown_account": true});
                let (status, _) = platform.call("POST", "/v1/connections", Some(body)).await;
                assert_eq!(status, 201);
            })
        })
        .collect();
    for w in writes {
        w.await.unwrap();
    }
    wait_until("thirty deliveries", Duration::from_secs(60), || async {
        receiver.received().await.len() >= 30
    })
    .await;
    let received = receiver.received().await;
    let ids: std::collections::BTreeSet<&String> = received.iter().map(|(id, _)| id).collect();
    assert_eq!(received.len(), 30, "none twice");
    assert_eq!(ids.len(), 30, "none lost");
    let logged = env.ok(&["events", "list"]).await;
    assert_eq!(logged.lines().count(), 30);
    drop(daemons);
}

#[tokio::test]
async fn a_secret_being_rotated_out_still_verifies_and_replay_sends_events_again() {
    let receiver = Receiver::spawn().await;
    // The receiver still knows only the old secret: the previous signature is what it checks.
    let hooks = receiver::config("platform", &receiver.url(), &[]).replace(
        &format!("secret = \"{}\"", receiver::SECRET),
        &format!(
            "secret = \"whsec_bmV3LXNlY3JldC1mb3ItdGhlLXJvdGF0aW9uLXRlc3QtMDEyMzQ1Ng==\"\n\
             previous_secret = \"{}\"",
            receiver::SECRET
        ),
    );
    let env = TestEnv::with_config(&format!("{}{hooks}", crate::api::ACME));
    let _daemon = env.spawn().await;
    endpoint_known(&env).await;
    Platform::new(&env)
        .connect("ada@example.com", json!({"access_token": "at-0123456789"}))
        .await;
    wait_until("the delivery", Duration::from_secs(30), || async {
        receiver.received().await.len() == 1
    })
    .await;
    let signature = receiver.deliveries().await[0]["signature"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        signature.split(' ').count(),
        2,
        "both signatures: {signature}"
    );

    let out = env
        .ok(&["webhooks", "replay", "platform", "--since", "1h"])
        .await;
    assert!(out.starts_with("1 events"), "{out}");
    wait_until("the replay", Duration::from_secs(30), || async {
        receiver.received().await.len() == 2
    })
    .await;
    let received = receiver.received().await;
    assert_eq!(
        received[0].0, received[1].0,
        "the same event, the same webhook-id"
    );
}

#[tokio::test]
async fn an_event_past_max_age_is_given_up_and_the_operator_told_once() {
    let receiver = Receiver::spawn().await;
    receiver.set_mode("fail").await;
    let hooks = receiver::config("platform", &receiver.url(), &[])
        .replace("timeout = \"2s\"", "timeout = \"2s\"\nmax_age = \"1s\"");
    let env = TestEnv::with_config(&format!(
        "[operator]\nemail = \"oncall@example.com\"\n{}{hooks}",
        crate::api::ACME
    ));
    let _daemon = env.spawn().await;
    endpoint_known(&env).await;
    let platform = Platform::new(&env);
    for _ in 0..2 {
        platform
            .connect("ada@example.com", json!({"access_token": "at-0123456789"}))
            .await;
    }
    wait_until("both given up", Duration::from_secs(30), || async {
        env.value("SELECT COUNT(*) FROM webhook_deliveries WHERE failed_at IS NOT NULL")
            .await
            == "2"
    })
    .await;
    let status = env.ok(&["webhooks", "status"]).await;
    assert!(status.contains("HTTP 500"), "{status}");
    wait_until("the operator's e-mail", Duration::from_secs(30), || async {
        !crate::helpers::read_dir_names(&env.path("mail")).is_empty()
    })
    .await;
    let mails = crate::helpers::read_dir_names(&env.path("mail"));
    assert_eq!(
        mails.len(),
        1,
        "one e-mail for the failing spell: {mails:?}"
    );
    let text = std::fs::read_to_string(env.path("mail").join(&mails[0])).unwrap();
    assert!(
        text.contains("platform") && text.contains("gave up"),
        "{text}"
    );
}

#[tokio::test]
async fn an_endpoint_added_by_a_reload_gets_events_from_then_on() {
    let receiver = Receiver::spawn().await;
    let env = TestEnv::with_config(crate::api::ACME);
    let mut daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let before = platform
        .connect("ada@example.com", json!({"access_token": "at-0123456789"}))
        .await;
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!(
            "{text}{}",
            receiver::config("platform", &receiver.url(), &[])
        ),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon
        .log_until("the reload", Duration::from_secs(30), |log| {
            log.iter().any(|l| l.contains("config reloaded"))
        })
        .await;
    endpoint_known(&env).await;
    let after = platform
        .connect(
            "grace@example.com",
            json!({"access_token": "at-9876543210"}),
        )
        .await;
    wait_until("the delivery", Duration::from_secs(30), || async {
        !receiver.received().await.is_empty()
    })
    .await;
    let received = receiver.received().await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].1["data"]["connection"], after.as_str());
    assert_ne!(received[0].1["data"]["connection"], before.as_str());
}
