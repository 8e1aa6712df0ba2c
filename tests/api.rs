//! The platform's API against the running daemon over real HTTP, with the real oidc-provider
//! (rotating refresh tokens with reuse detection): hand-outs, failure reports, keys, bad input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::peers::OidcServer;
use crate::helpers::{API_KEY, Db, TestEnv, wait_until};

/// An installation whose sweep runs every second, with oidc-provider as `acme` (probe: /me).
async fn installation(db: Db, oidc: &OidcServer) -> TestEnv {
    TestEnv::with_config_on(
        db,
        &format!(
            "[schedule]\nsweep = \"* * * * * *\"\n\n\
             [providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"{}\"\nprobe_url = \"{}\"\n\
             client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n\
             scopes = \"openid email offline_access\"\nrotates_refresh_tokens = true\n",
            oidc.url("/token"),
            oidc.url("/auth"),
            oidc.url("/me"),
        ),
    )
    .await
}

/// The platform's side of the API.
#[derive(Clone)]
pub struct Platform {
    base: String,
    http: reqwest::Client,
}

impl Platform {
    pub fn new(env: &TestEnv) -> Self {
        Self {
            base: env.api_url(),
            http: reqwest::Client::new(),
        }
    }

    /// The API of the daemon running with another config file (a replica).
    pub fn at(config: &std::path::Path) -> Self {
        let mut in_api = false;
        let mut addr = String::new();
        for line in std::fs::read_to_string(config).unwrap().lines() {
            if line.starts_with('[') {
                in_api = line.trim() == "[api]";
            } else if in_api && line.starts_with("listen") {
                addr = line.split('"').nth(1).unwrap().to_owned();
            }
        }
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `body` (JSON, when given) with the test key; answers the status and the JSON.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
        };
        (status, json)
    }

    /// Checks the connection now (or waits for the sweep's check of it), so that nothing about
    /// it is due for a long while: a snapshot taken next changes only by what the test does.
    pub async fn settle(&self, id: &str) {
        let (_, report) = self
            .call("POST", &format!("/v1/connections/{id}/check"), None)
            .await;
        if report["outcome"] == "checked" {
            return;
        }
        let path = format!("/v1/connections/{id}");
        wait_until("the sweep's check", Duration::from_secs(90), || async {
            !self.call("GET", &path, None).await.1["last_check_at"].is_null()
        })
        .await;
    }

    /// Creates a connection from a grant's token response; answers its id.
    /// A grant without an id_token is stored with `allow_unknown_account`.
    pub async fn connect(&self, owner: &str, tokens: Value) -> String {
        let unknown = tokens.get("id_token").is_none();
        let body = json!({"provider": "acme", "name": "CRM", "owner": owner, "tokens": tokens,
            "allow_unknown_account": unknown});
        let (status, c) = self.call("POST", "/v1/connections", Some(body)).await;
        assert_eq!(status, 201, "{c}");
        c["id"].as_str().unwrap().to_owned()
    }
}

/// A provider nothing answers for: enough for calls that never reach it.
pub const ACME: &str = "\n[providers.acme]\ntoken_url = \"http://127.0.0.1:9/token\"\n\
    authorize_url = \"http://127.0.0.1:9/authorize\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";

async fn refreshes(oidc: &OidcServer) -> u64 {
    let r: Value = reqwest::get(oidc.url("/test/refreshes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["refreshes"].as_u64().unwrap()
}

crate::on_both_backends!(fifty_callers_get_one_refresh_and_the_same_working_token);

async fn fifty_callers_get_one_refresh_and_the_same_working_token(db: Db) {
    let oidc = OidcServer::spawn(json!({})).await;
    let env = installation(db, &oidc).await;
    let mut daemon = env.spawn().await;
    let platform = Platform::new(&env);
    // A real grant whose access token is about to run out (the provider's lives an hour): every
    // caller below needs a refresh, and the daemon's sweep finds the new connection due at once.
    let mut grant: Value = serde_json::from_str(&oidc.grant("user-1").await).unwrap();
    let stored_token = grant["access_token"].as_str().unwrap().to_owned();
    grant["expires_in"] = json!(30);
    // Counted from before the connection exists: the sweep may refresh it first, and then the
    // callers must not refresh it again.
    let before = refreshes(&oidc).await;
    let id = platform.connect("ada@example.com", grant).await;

    let path = format!("/v1/connections/{id}/access-token");
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (platform, path) = (platform.clone(), path.clone());
            tokio::spawn(async move {
                platform
                    .call("POST", &path, Some(json!({"min_valid": "10m"})))
                    .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["token_type"], "Bearer");
            assert!(body.get("refresh_token").is_none(), "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every caller gets the same token");
    let token = tokens.into_iter().next().unwrap();
    assert_ne!(token, stored_token, "a token refreshed for the callers");
    // Two more sweeps after the calls: no second refresh (it would revoke the family).
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    daemon
        .log_until("two more sweeps", Duration::from_secs(30), |log| {
            let after = |l: &&String| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|t| t > now.as_str())
            };
            log.iter()
                .filter(after)
                .filter(|l| l.contains("sweep finished"))
                .count()
                >= 2
        })
        .await;
    assert_eq!(refreshes(&oidc).await - before, 1, "exactly one refresh");
    let me = reqwest::Client::new()
        .get(oidc.url("/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        200,
        "the handed-out token works at the provider"
    );
    // A fresh token is served as stored: no refresh.
    let (status, again) = platform.call("POST", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(again["access_token"], token.as_str());
    assert_eq!(refreshes(&oidc).await - before, 1);
}

crate::on_both_backends!(a_failure_report_about_a_revoked_grant_breaks_it_and_pauses_its_pipelines);

async fn a_failure_report_about_a_revoked_grant_breaks_it_and_pauses_its_pipelines(db: Db) {
    let oidc = OidcServer::spawn(json!({})).await;
    let env = installation(db, &oidc).await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let grant: Value = serde_json::from_str(&oidc.grant("user-2").await).unwrap();
    let id = platform.connect("ada@example.com", grant).await;
    let (status, pipeline) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "Orders", "connections": [id], "position": "cursor-1"})),
        )
        .await;
    assert_eq!(status, 201, "{pipeline}");
    let pipeline = pipeline["id"].as_str().unwrap().to_owned();
    let (status, _) = platform
        .call(
            "PUT",
            &format!("/v1/pipelines/{pipeline}/position"),
            Some(json!({"position": "cursor-7"})),
        )
        .await;
    assert_eq!(status, 200);

    reqwest::Client::new()
        .post(oidc.url("/test/accounts/user-2/revoke-app"))
        .send()
        .await
        .unwrap();
    let report = json!({
        "status": 401,
        "www_authenticate": "Bearer error=\"invalid_token\"",
        "body": "{\"error\":\"invalid_token\"}",
    });
    let failures = format!("/v1/connections/{id}/failures");
    let (status, verdict) = platform.call("POST", &failures, Some(report.clone())).await;
    assert_eq!(status, 200, "{verdict}");
    assert_eq!(verdict["status"], "broken", "{verdict}");
    assert_eq!(verdict["shared"], false);
    // A pipeline retrying at once shares that check: no second call to the provider.
    let (status, again) = platform.call("POST", &failures, Some(report)).await;
    assert_eq!(status, 200);
    assert_eq!(again["shared"], true, "{again}");

    let (status, problem) = platform
        .call("POST", &format!("/v1/connections/{id}/access-token"), None)
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "/problems/connection-broken");
    assert_eq!(problem["category"], "revoked", "{problem}");
    assert!(problem["since"].is_string(), "{problem}");
    let (_, p) = platform
        .call("GET", &format!("/v1/pipelines/{pipeline}"), None)
        .await;
    assert_eq!(p["state"], "paused", "{p}");
    assert_eq!(p["paused_by"], "credwatch");
    assert_eq!(p["resume_from"], "cursor-7", "{p}");
    // The platform hears it from the feed: the break, then the pause at its position.
    let (_, feed) = platform
        .call(
            "GET",
            "/v1/events?types=connection.broken,pipeline.paused",
            None,
        )
        .await;
    let events = feed["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{feed}");
    assert_eq!(events[0]["type"], "connection.broken");
    assert_eq!(events[0]["data"]["connection"], id.as_str());
    assert_eq!(events[0]["data"]["category"], "revoked");
    assert_eq!(events[1]["type"], "pipeline.paused");
    assert_eq!(events[1]["data"]["pipeline"], pipeline.as_str());
    assert_eq!(events[1]["data"]["position"], "cursor-7");
    assert!(events[0]["id"].as_str() < events[1]["id"].as_str());
    assert!(!feed.to_string().contains(r#""access_token""#), "{feed}");
}

crate::on_both_backends!(a_missing_or_wrong_key_is_refused_and_writes_nothing);

async fn a_missing_or_wrong_key_is_refused_and_writes_nothing(db: Db) {
    let env = TestEnv::with_config_on(db, ACME).await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let (_, p) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(
                json!({"provider": "acme", "name": "x", "owner": "a@example.com",
                "tokens": {"access_token": "at-0123456789"}, "allow_unknown_account": true}),
            ),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    platform.settle(&id).await;
    let before = env.db_snapshot().await;
    let http = reqwest::Client::new();
    let base = env.api_url();
    let keys = [
        None,
        Some("Bearer cwk_not-a-key".to_owned()),
        Some("Basic cGxhdGZvcm06eA==".to_owned()),
        Some(format!("Bearer {API_KEY}x")),
        Some("Bearer ".to_owned()),
    ];
    for key in &keys {
        for (method, path, body) in [
            (
                "POST",
                "/v1/connections".to_owned(),
                json!({"provider": "acme"}),
            ),
            (
                "POST",
                format!("/v1/connections/{id}/access-token"),
                json!({}),
            ),
            ("DELETE", format!("/v1/connections/{id}"), json!({})),
            ("POST", "/v1/positions".to_owned(), json!({"positions": []})),
            ("GET", "/v1/status".to_owned(), json!({})),
        ] {
            let mut request = http
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .json(&body);
            if let Some(key) = key {
                request = request.header("authorization", key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {key:?}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"credwatch\""
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["type"], "/problems/unauthorized");
        }
    }
    assert_eq!(env.db_snapshot().await, before, "nothing written");
}

#[tokio::test]
async fn callers_at_two_replicas_share_one_refresh() {
    let oidc = OidcServer::spawn(json!({})).await;
    let env = installation(Db::Postgres, &oidc).await;
    let other = env.path("replica.toml");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let port = crate::helpers::peers::free_port();
    std::fs::write(&other, crate::replicas::replica_config_text(&text, port)).unwrap();
    let _first = env.spawn().await;
    let _second = env.spawn_with(&other).await;
    let first = Platform::new(&env);
    let second = Platform::at(&other);
    let mut grant: Value = serde_json::from_str(&oidc.grant("user-3").await).unwrap();
    grant["expires_in"] = json!(30);
    let before = refreshes(&oidc).await;
    let id = first.connect("ada@example.com", grant).await;
    let path = format!("/v1/connections/{id}/access-token");
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let platform = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let path = path.clone();
            tokio::spawn(async move {
                platform
                    .call("POST", &path, Some(json!({"min_valid": 600})))
                    .await
            })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 1, "both replicas hand out the one new token");
    assert_eq!(refreshes(&oidc).await - before, 1, "exactly one refresh");
}
