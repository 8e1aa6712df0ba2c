//! The event feed: each event once, in order, from a cursor; a long poll answers as soon as an
//! event is written.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{ACME, Platform};
use crate::helpers::{Db, TestEnv};

fn connection(n: u32) -> Value {
    json!({"provider": "acme", "name": format!("CRM {n}"), "owner": "ada@example.com",
        "tokens": {"access_token": format!("at-{n}-0123456789"), "expires_in": 3600},
        "allow_unknown_account": true, "external_id": format!("ext-{n}"), "metadata": {"n": n}})
}

crate::on_both_backends!(the_feed_gives_each_event_once_in_order_and_a_long_poll_wakes_at_once);

async fn the_feed_gives_each_event_once_in_order_and_a_long_poll_wakes_at_once(db: Db) {
    let env = TestEnv::with_config_on(db, ACME).await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, c) = platform
            .call("POST", "/v1/connections", Some(connection(n)))
            .await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    // Two pages of two: the three creations, once each, in order, then nothing.
    let (status, first) = platform.call("GET", "/v1/events?limit=2", None).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = platform
        .call(
            "GET",
            &format!(
                "/v1/events?limit=2&after={}",
                first["next"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let seen: Vec<&Value> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["events"].as_array().unwrap())
        .collect();
    assert_eq!(seen.len(), 3, "{first} {second}");
    for (n, e) in seen.iter().enumerate() {
        assert_eq!(e["type"], "connection.created");
        assert_eq!(e["data"]["connection"], ids[n].as_str());
        assert_eq!(e["external_id"], format!("ext-{n}"));
        assert_eq!(e["metadata"], json!({"n": n}));
    }
    let cursor = second["next"].as_str().unwrap().to_owned();
    let (_, empty) = platform
        .call("GET", &format!("/v1/events?after={cursor}"), None)
        .await;
    assert_eq!(empty["events"], json!([]));
    assert_eq!(
        empty["next"],
        cursor.as_str(),
        "the cursor stays where it was"
    );

    // A long poll, then an event: it answers with that event, long before its wait is over.
    let poll = {
        let platform = platform.clone();
        let path = format!("/v1/events?after={cursor}&wait=30s");
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let answer = platform.call("GET", &path, None).await;
            (answer, started.elapsed())
        })
    };
    let (_, p) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "P", "connections": [ids[0]]})),
        )
        .await;
    let pipeline = p["id"].as_str().unwrap().to_owned();
    let (status, _) = platform
        .call(
            "POST",
            &format!("/v1/pipelines/{pipeline}/pause"),
            Some(json!({"reason": "upgrade"})),
        )
        .await;
    assert_eq!(status, 200);
    let ((status, woke), waited) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(woke["events"][0]["type"], "pipeline.paused", "{woke}");
    assert_eq!(woke["events"][0]["data"]["paused_by"], "platform");
    assert!(
        waited < Duration::from_secs(20),
        "the long poll waited {waited:?}"
    );

    // The same log from the command line, and removal is an event too.
    assert_eq!(
        platform
            .call("DELETE", &format!("/v1/pipelines/{pipeline}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        platform
            .call("DELETE", &format!("/v1/connections/{}", ids[2]), None)
            .await
            .0,
        204
    );
    let out = env
        .ok(&["events", "list", "--type", "connection.deleted"])
        .await;
    let deleted: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(deleted["data"]["connection"], ids[2].as_str());
    assert_eq!(
        deleted["external_id"], "ext-2",
        "kept after the connection is gone"
    );

    let (status, problem) = platform
        .call("GET", "/v1/events?types=connection.exploded", None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "types");
    let (status, _) = platform.call("GET", "/v1/events?wait=5m", None).await;
    assert_eq!(status, 422);
}
