//! The API's answers to bad input, its OpenAPI document, its keys on reload, and the
//! connection and pipeline calls a platform makes around the token hand-outs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{ACME, Platform};
use crate::helpers::{API_KEY, Db, TestEnv};

crate::on_both_backends!(every_bad_body_is_a_problem_naming_its_field_and_writes_nothing);

async fn every_bad_body_is_a_problem_naming_its_field_and_writes_nothing(db: Db) {
    let env =
        TestEnv::with_config_on(db, &format!("[api]\nlisten = \"127.0.0.1:0\"\n{ACME}")).await;
    // Its own port (the default config's [api] is replaced by the one above).
    let env = with_api_port(env);
    let _daemon = env.spawn().await;
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
    let (_, p) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "P", "connections": [conn]})),
        )
        .await;
    let pipe = p["id"].as_str().unwrap().to_owned();
    platform.settle(&conn).await;
    let before = env.db_snapshot().await;

    let good = json!({"provider": "acme", "name": "CRM", "owner": "a@example.com",
        "tokens": {"access_token": "at-0123456789"}, "allow_unknown_account": true});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases: Vec<(&str, String, Value, u16, Option<&str>)> = vec![
        (
            "POST",
            "/v1/connections".into(),
            without("provider"),
            422,
            Some("provider"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("provider", json!("nope")),
            422,
            Some("provider"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("provider", json!("Not An Id")),
            422,
            Some("provider"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("owner", json!("not-an-address")),
            422,
            Some("owner"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("name", json!("  ")),
            422,
            Some("name"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("tokens", json!({"token_type": "Bearer"})),
            422,
            Some("tokens"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("tokens", json!("at-0123456789")),
            422,
            Some("tokens"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("metadata", json!([1, 2])),
            422,
            Some("metadata"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("external_id", json!("")),
            422,
            Some("external_id"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            with("colour", json!("blue")),
            422,
            Some("colour"),
        ),
        (
            "POST",
            "/v1/connections".into(),
            json!("a string"),
            400,
            None,
        ),
        (
            "POST",
            "/v1/pipelines".into(),
            json!({"name": "P", "connections": ["conn_22222222222222"]}),
            422,
            Some("connections"),
        ),
        (
            "POST",
            "/v1/pipelines".into(),
            json!({"name": "P", "connections": []}),
            422,
            Some("connections"),
        ),
        (
            "POST",
            "/v1/pipelines".into(),
            json!({"name": "P", "connections": [conn], "position": "a\u{7}b"}),
            422,
            Some("position"),
        ),
        (
            "POST",
            "/v1/positions".into(),
            json!({"positions": [{"pipeline": pipe, "position": "ok"}, {"pipeline": pipe, "position": ""}]}),
            422,
            Some("positions[1].position"),
        ),
        (
            "POST",
            "/v1/positions".into(),
            json!({"positions": [{"pipeline": "nope", "position": "x"}]}),
            422,
            Some("positions[0].pipeline"),
        ),
        (
            "PUT",
            format!("/v1/pipelines/{pipe}/position"),
            json!({}),
            422,
            Some("position"),
        ),
        (
            "PUT",
            "/v1/pipelines/pipe_22222222222222/position".into(),
            json!({"position": "x"}),
            404,
            None,
        ),
        (
            "POST",
            format!("/v1/connections/{conn}/access-token"),
            json!({"min_valid": "soon"}),
            422,
            Some("min_valid"),
        ),
        (
            "POST",
            format!("/v1/connections/{conn}/access-token"),
            json!({"min_valid": "2d"}),
            422,
            Some("min_valid"),
        ),
        (
            "POST",
            format!("/v1/connections/{conn}/failures"),
            json!({"status": 99}),
            422,
            Some("status"),
        ),
        (
            "POST",
            format!("/v1/connections/{conn}/failures"),
            json!({}),
            422,
            Some("status"),
        ),
        (
            "PATCH",
            format!("/v1/connections/{conn}"),
            json!({"owner": "x"}),
            422,
            Some("owner"),
        ),
        (
            "GET",
            "/v1/connections?status=fine".into(),
            Value::Null,
            422,
            Some("status"),
        ),
        (
            "GET",
            "/v1/connections?limit=0".into(),
            Value::Null,
            422,
            Some("limit"),
        ),
        (
            "GET",
            "/v1/connections?colour=blue".into(),
            Value::Null,
            422,
            Some("colour"),
        ),
        (
            "GET",
            "/v1/connections/conn_22222222222222".into(),
            Value::Null,
            404,
            None,
        ),
        (
            "GET",
            "/v1/connections/not-an-id".into(),
            Value::Null,
            404,
            None,
        ),
        (
            "DELETE",
            format!("/v1/connections/{conn}"),
            Value::Null,
            409,
            None,
        ),
    ];
    for (method, path, body, status, field) in cases {
        let body = (!body.is_null()).then_some(body);
        let (got, problem) = platform.call(method, &path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {problem}");
        assert_eq!(problem["status"], status, "{problem}");
        assert!(problem["type"].as_str().unwrap().starts_with("/problems/"));
        assert!(problem["detail"].is_string(), "{problem}");
        if let Some(field) = field {
            assert_eq!(
                problem["field"], field,
                "{method} {path} {body:?}: {problem}"
            );
        }
    }

    // Not JSON, not declared as JSON, and too large.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/connections", env.api_url());
    for (content_type, body, status) in [
        ("application/json", "{\"provider\": ".to_owned(), 400),
        ("text/plain", good.to_string(), 415),
        (
            "application/json",
            format!("{{\"name\": \"{}\"}}", "x".repeat(2 << 20)),
            413,
        ),
    ] {
        let response = http
            .post(&url)
            .bearer_auth(API_KEY)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{content_type}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    assert_eq!(env.db_snapshot().await, before, "nothing written");
}

/// Gives the API of `env` a free port of its own.
fn with_api_port(env: TestEnv) -> TestEnv {
    let text = std::fs::read_to_string(&env.config).unwrap();
    let port = crate::helpers::peers::free_port();
    let hash: String = {
        use sha2::Digest;
        sha2::Sha256::digest(API_KEY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::fs::write(
        &env.config,
        text.replace(
            "[api]\nlisten = \"127.0.0.1:0\"\n",
            &format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = 65536\n\n\
                 [[api.keys]]\nname = \"platform\"\nsha256 = \"{hash}\"\n"
            ),
        ),
    )
    .unwrap();
    env
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_call() {
    let env = TestEnv::new();
    let _daemon = env.spawn().await;
    let response = reqwest::get(format!("{}/v1/openapi.json", env.api_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/connections/{id}/access-token",
        "/v1/connections/{id}/failures",
        "/v1/connections/{id}/check",
        "/v1/connections/{id}/reauthorize-link",
        "/v1/connections",
        "/v1/connections/{id}",
        "/v1/pipelines",
        "/v1/pipelines/{id}",
        "/v1/pipelines/{id}/position",
        "/v1/pipelines/{id}/pause",
        "/v1/pipelines/{id}/resume",
        "/v1/positions",
        "/v1/status",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
    let file = env.path("openapi.json");
    std::fs::write(&file, &text).unwrap();
    // A validator that is not ours: openapi-spec-validator, pinned in tests/peers.
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.venv/bin/python");
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            "import sys\nfrom openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             validate(read_from_filename(sys.argv[1])[0])\nprint('valid')",
        ])
        .arg(&file)
        .output()
        .await
        .expect("run openapi-spec-validator (tests/peers/setup installs it)");
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn keys_added_and_removed_by_a_reload_apply_at_once() {
    let env = TestEnv::new();
    let mut daemon = env.spawn().await;
    let url = format!("{}/v1/status", env.api_url());
    let status_with = |key: String| {
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status_with(API_KEY.to_owned()).await, 200);
    let refused = env.cli(&["api-key", "generate", "two words"]).await;
    assert_eq!(refused.status.code(), Some(65));
    let out = env.ok(&["api-key", "generate", "ingest-workers"]).await;
    let new_key = out.lines().next().unwrap().to_owned();
    assert!(new_key.starts_with("cwk_"), "{out}");
    assert_eq!(status_with(new_key.clone()).await, 401);
    // The printed lines replace the test key's.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let start = text.find("[[api.keys]]").unwrap();
    let end = start + text[start..].find("sha256").unwrap();
    let end = end + text[end..].find('\n').unwrap() + 1;
    let lines = &out[out.find("[[api.keys]]").unwrap()..];
    std::fs::write(
        &env.config,
        format!("{}{lines}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    daemon
        .log_until("the reload", Duration::from_secs(30), |log| {
            log.iter().any(|l| l.contains("config reloaded"))
        })
        .await;
    assert_eq!(status_with(new_key).await, 200);
    assert_eq!(status_with(API_KEY.to_owned()).await, 401);
    let log = daemon
        .log_until(
            "the request logged by key name",
            Duration::from_secs(10),
            |log| {
                log.iter()
                    .any(|l| l.contains("API request") && l.contains("ingest-workers"))
            },
        )
        .await;
    assert!(
        !log.iter().any(|l| l.contains("cwk_")),
        "a key reached the log"
    );
}
