//! The platform's whole loop over the API (create, list, change, pause, resume, remove), and
//! hand-outs while the provider fails: a degraded connection with a valid token still hands it
//! out; with none left the answer is 503 with Retry-After. No token reaches the log.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{ACME, Platform};
use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::{API_KEY, TestEnv};

#[tokio::test]
async fn a_platform_manages_its_connections_and_pipelines_over_the_api() {
    let env = TestEnv::with_config(ACME);
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let new = |n: u32| {
        json!({"provider": "acme", "name": format!("CRM {n}"), "owner": format!("owner{n}@example.com"),
            "tokens": {"access_token": format!("at-{n}-0123456789"), "expires_in": 3600},
            "allow_unknown_account": true, "external_id": format!("ext-{n}"),
            "metadata": {"tenant": n}})
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, c) = platform.call("POST", "/v1/connections", Some(new(n))).await;
        assert_eq!(status, 201, "{c}");
        assert_eq!(c["metadata"]["tenant"], n, "{c}");
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    // The same external id again: the first connection, nothing new.
    let (status, again) = platform.call("POST", "/v1/connections", Some(new(3))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], ids[3].as_str());

    // Pages of two, in id order, until the cursor runs out.
    let mut seen = Vec::new();
    let mut path = "/v1/connections?limit=2&provider=acme".to_owned();
    loop {
        let (status, page) = platform.call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/connections?limit=2&provider=acme&cursor={cursor}"),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    let (_, by_ext) = platform
        .call("GET", "/v1/connections?external_id=ext-2", None)
        .await;
    assert_eq!(by_ext["items"][0]["id"], ids[2].as_str(), "{by_ext}");
    let (_, broken) = platform
        .call("GET", "/v1/connections?status=broken", None)
        .await;
    assert_eq!(broken["items"], json!([]));

    // Change the owner and the metadata; clear the metadata.
    let one = format!("/v1/connections/{}", ids[0]);
    let (status, c) = platform
        .call(
            "PATCH",
            &one,
            Some(json!({"owner": "grace@example.com", "metadata": {"tier": "gold"}})),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["owner"], "grace@example.com");
    assert_eq!(c["metadata"], json!({"tier": "gold"}));
    assert_eq!(c["name"], "CRM 0", "a field not sent is kept");
    let (_, c) = platform
        .call("PATCH", &one, Some(json!({"metadata": null})))
        .await;
    assert_eq!(c["metadata"], Value::Null);
    assert_eq!(c["owner"], "grace@example.com");

    // A pipeline; the platform pauses and resumes it; positions in a batch.
    let (status, p) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "Orders", "connections": [ids[0]], "external_id": "orders"})),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let pipe = p["id"].as_str().unwrap().to_owned();
    let (status, _) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "Orders", "connections": [ids[0]], "external_id": "orders"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, recorded) = platform
        .call(
            "POST",
            "/v1/positions",
            Some(json!({"positions": [
                {"pipeline": pipe, "position": "offset=42"},
                {"pipeline": "pipe_22222222222222", "position": "offset=1"},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{recorded}");
    assert_eq!(
        recorded,
        json!({"recorded": 1, "unknown": ["pipe_22222222222222"]})
    );
    let (_, paused) = platform
        .call(
            "POST",
            &format!("/v1/pipelines/{pipe}/pause"),
            Some(json!({"reason": "maintenance"})),
        )
        .await;
    assert_eq!(paused["state"], "paused", "{paused}");
    assert_eq!(paused["paused_by"], "platform");
    assert_eq!(paused["resume_from"], "offset=42");
    let (_, list) = platform
        .call("GET", "/v1/pipelines?state=paused", None)
        .await;
    assert_eq!(list["items"][0]["id"], pipe.as_str(), "{list}");
    let (_, resumed) = platform
        .call("POST", &format!("/v1/pipelines/{pipe}/resume"), None)
        .await;
    assert_eq!(resumed["state"], "running", "{resumed}");
    let (_, shown) = platform
        .call("GET", &format!("/v1/pipelines/{pipe}"), None)
        .await;
    assert_eq!(shown["events"].as_array().unwrap().len(), 2, "{shown}");

    // What the command line sees is what the API wrote: one store, one set of actions.
    let cli = env.ok(&["pipeline", "show", &pipe]).await;
    assert!(cli.contains("offset=42"), "{cli}");
    let (_, status) = platform.call("GET", "/v1/status", None).await;
    assert_eq!(status["connections"].as_array().unwrap().len(), 5);
    assert_eq!(status["pipelines"][0]["position"], "offset=42");

    let (_, shown) = platform.call("GET", &one, None).await;
    assert_eq!(shown["pipelines"], json!([pipe]), "{shown}");
    let (status, link) = platform
        .call("POST", &format!("{one}/reauthorize-link"), None)
        .await;
    assert_eq!(status, 201, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/reauthorize/", env.base_url())),
        "{link}"
    );

    let (status, problem) = platform.call("DELETE", &one, None).await;
    assert_eq!(status, 409, "pipelines use it: {problem}");
    assert_eq!(problem["type"], "/problems/connection-in-use");
    assert_eq!(problem["pipelines"], json!([pipe]));
    assert_eq!(
        platform
            .call("DELETE", &format!("/v1/pipelines/{pipe}"), None)
            .await
            .0,
        204
    );
    assert_eq!(platform.call("DELETE", &one, None).await.0, 204);
    assert_eq!(platform.call("GET", &one, None).await.0, 404);
}

#[tokio::test]
async fn hand_outs_while_the_provider_fails_say_when_to_come_back() {
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Json(503, "{\"error\":\"temporarily_unavailable\"}"));
    let env = TestEnv::with_config(&format!(
        "[providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:9/a\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\n",
        fake.token_url()
    ));
    let daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let valid = platform
        .connect(
            "ada@example.com",
            json!({"access_token": "at-still-valid-0123456789", "refresh_token": "rt-0123456789",
                "expires_in": 3600}),
        )
        .await;
    let expired = platform
        .connect(
            "ada@example.com",
            json!({"access_token": "at-expired-0123456789", "refresh_token": "rt-9876543210",
                "expires_at": chrono::Utc::now().timestamp() - 60}),
        )
        .await;
    // The provider fails: the connection is degraded, not broken.
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{valid}/check"), None)
        .await;
    assert_eq!(report["after"], "degraded", "{report}");
    // Its stored token is still good for the 5 minutes asked: handed out, no call made.
    let calls = fake.token_calls();
    let (status, token) = platform
        .call(
            "POST",
            &format!("/v1/connections/{valid}/access-token"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["access_token"], "at-still-valid-0123456789");
    assert_eq!(fake.token_calls(), calls);

    // No valid token left and the refresh fails for now: 503, and when to ask again.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/connections/{expired}/access-token",
            env.api_url()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/token-unavailable", "{problem}");
    assert!(fake.token_calls() > calls, "a refresh was tried");

    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let log = log.join("\n");
    for secret in [
        "at-still-valid",
        "at-expired",
        "rt-0123456789",
        "rt-9876543210",
        API_KEY,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(
        log.contains("key=platform"),
        "requests are logged by key name:\n{log}"
    );
}

#[tokio::test]
async fn deleting_with_revoke_over_the_api_ends_the_grant_at_the_provider() {
    let (oidc, env, _base) = crate::reauth::install(crate::helpers::Db::Sqlite, None, "").await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let grant: Value = serde_json::from_str(&oidc.grant("user-6").await).unwrap();
    let refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    let id = platform.connect("ada@example.com", grant).await;
    let (status, problem) = platform
        .call(
            "DELETE",
            &format!("/v1/connections/{id}?revoke=maybe"),
            None,
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "revoke");
    let (status, _) = platform
        .call("DELETE", &format!("/v1/connections/{id}?revoke=true"), None)
        .await;
    assert_eq!(status, 204);
    let v: Value = reqwest::Client::new()
        .post(oidc.url("/token/introspection"))
        .basic_auth("credwatch", Some("credwatch-secret"))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], false, "the provider no longer accepts it");
    assert_eq!(
        platform
            .call("GET", &format!("/v1/connections/{id}"), None)
            .await
            .0,
        404
    );
    let (_, feed) = platform
        .call("GET", "/v1/events?types=connection.deleted", None)
        .await;
    assert_eq!(
        feed["events"][0]["data"]["connection"],
        id.as_str(),
        "{feed}"
    );
}
