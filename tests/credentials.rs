//! Connections that hold an API key or a password: stored sealed, checked by the probe alone
//! (the key where the provider wants it), classified by the same rules. The provider here is
//! ours, for the faults: a key revoked, a burst of 5xx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::api::Platform;
use crate::helpers::{TestEnv, read_dir_names, wait_until};

/// A provider whose `/me` takes one API key in `X-Api-Key`, or answers 503 when told to.
pub struct KeyedProvider {
    port: u16,
    pub valid: Arc<Mutex<String>>,
    pub down: Arc<Mutex<bool>>,
    _server: tokio::task::JoinHandle<()>,
}

impl KeyedProvider {
    pub async fn spawn(key: &str) -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let valid = Arc::new(Mutex::new(key.to_owned()));
        let down = Arc::new(Mutex::new(false));
        let (v, d) = (valid.clone(), down.clone());
        let app = axum::Router::new().route(
            "/me",
            axum::routing::get(move |headers: HeaderMap| {
                let (v, d) = (v.clone(), d.clone());
                async move {
                    if *d.lock().unwrap() {
                        return (StatusCode::SERVICE_UNAVAILABLE, "<html>maintenance</html>".to_owned());
                    }
                    let given = headers.get("x-api-key").and_then(|h| h.to_str().ok()).unwrap_or("");
                    if given == v.lock().unwrap().as_str() {
                        (StatusCode::OK, r#"{"id":"acct-7"}"#.to_owned())
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            r#"{"error":"invalid_api_key","error_description":"this API key was revoked"}"#.to_owned(),
                        )
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            valid,
            down,
            _server: server,
        }
    }

    pub fn config(&self) -> String {
        format!(
            "\n[providers.keyed]\ndisplay_name = \"Keyed CRM\"\nauth = \"api_key\"\n\
             api_key_in = \"header:X-Api-Key\"\nprobe_url = \"http://127.0.0.1:{}/me\"\n\
             account_from = \"probe:/id\"\n\
             rules = [{{ phase = \"probe\", error = \"invalid_api_key\", category = \"revoked\" }}]\n",
            self.port
        )
    }
}

#[tokio::test]
async fn an_api_key_is_checked_by_its_probe_and_a_revoked_one_breaks_the_connection() {
    let provider = KeyedProvider::spawn("key-0123456789-good").await;
    let env = TestEnv::with_config(&format!(
        "[notices]\ndigest_window = \"1s\"\n{}",
        provider.config()
    ));
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);

    // A token response is refused for it, and a key for an OAuth provider would be too.
    let (status, problem) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(json!({"provider": "keyed", "name": "CRM",
            "owner": "ada@example.com", "tokens": {"access_token": "at-0123456789"}})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "credentials");
    let (status, c) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(json!({"provider": "keyed", "name": "CRM",
            "owner": "ada@example.com", "credentials": {"api_key": "key-0123456789-good"}})),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["account"], "acct-7", "the probe named the account");
    assert_eq!(c["has_refresh_token"], false);
    let id = c["id"].as_str().unwrap().to_owned();
    let pipeline = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "Orders",
            "--connection",
            &id,
            "--position",
            "page=4",
        ])
        .await;

    // A burst of 5xx: degraded, nothing paused.
    *provider.down.lock().unwrap() = true;
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "degraded", "{report}");
    assert_eq!(report["paused"], json!([]));
    *provider.down.lock().unwrap() = false;
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "healthy", "{report}");

    // The key revoked at the provider: broken in its words, pipeline paused, owner e-mailed.
    *provider.valid.lock().unwrap() = "key-9876543210-new".into();
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "broken", "{report}");
    assert_eq!(report["category"], "revoked");
    assert_eq!(report["paused"], json!([pipeline.trim()]));
    wait_until("the owner's e-mail", Duration::from_secs(30), || async {
        !read_dir_names(&env.path("mail")).is_empty()
    })
    .await;
    let mail = read_dir_names(&env.path("mail"));
    let text = std::fs::read_to_string(env.path("mail").join(&mail[0])).unwrap();
    assert!(text.contains("Keyed CRM"), "{text}");
    // Its hand-out is refused like any broken connection's; the key never shows anywhere.
    let (status, _) = platform
        .call("POST", &format!("/v1/connections/{id}/access-token"), None)
        .await;
    assert_eq!(status, 409);
    let snapshot = env.db_snapshot().await.join("\n");
    assert!(!snapshot.contains("key-0123456789-good"), "stored sealed");
    let (_, shown) = platform
        .call("GET", &format!("/v1/connections/{id}"), None)
        .await;
    assert!(!shown.to_string().contains("key-0123456789"), "{shown}");
}

#[tokio::test]
async fn a_password_connection_from_the_command_line_is_probed_with_http_basic() {
    use axum::http::{HeaderMap, StatusCode};
    let seen = Arc::new(Mutex::new(String::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/me",
        axum::routing::get(move |headers: HeaderMap| {
            let s = s.clone();
            async move {
                *s.lock().unwrap() = headers
                    .get("authorization")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                (StatusCode::OK, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let env = TestEnv::with_config(&format!(
        "\n[providers.legacy]\nauth = \"basic\"\nprobe_url = \"http://127.0.0.1:{port}/me\"\n"
    ));
    let out = env
        .cli_with_stdin(
            &[
                "connection",
                "add",
                "--provider",
                "legacy",
                "--name",
                "FTP",
                "--owner",
                "ada@example.com",
                "--account",
                "ops",
                "--credentials",
                "-",
            ],
            br#"{"username": "ops", "password": "pa:ss-0123456789"}"#,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let report = env.check(&id).await;
    assert_eq!(report["after"], "healthy", "{report}");
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops:pa:ss-0123456789")
    );
    assert_eq!(*seen.lock().unwrap(), expected);
    // A key for a password provider is refused, naming what it takes.
    let refused = env
        .cli_with_stdin(
            &[
                "connection",
                "add",
                "--provider",
                "legacy",
                "--name",
                "X",
                "--owner",
                "ada@example.com",
                "--credentials",
                "-",
            ],
            br#"{"api_key": "k-0123456789"}"#,
        )
        .await;
    assert_eq!(refused.status.code(), Some(65));
}

#[tokio::test]
async fn the_owner_re_enters_a_key_in_the_form_and_only_a_working_one_is_stored() {
    let provider = KeyedProvider::spawn("key-0123456789-old").await;
    let env = TestEnv::with_config(&provider.config());
    let platform = Platform::new(&env);
    let _daemon = env.spawn().await;
    let (_, c) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(json!({"provider": "keyed", "name": "CRM",
            "owner": "ada@example.com", "credentials": {"api_key": "key-0123456789-old"}})),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    let pipeline = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "Orders",
            "--connection",
            &id,
            "--position",
            "page=9",
        ])
        .await;
    *provider.valid.lock().unwrap() = "key-0123456789-new".into();
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "broken", "{report}");
    let link = env
        .ok(&["connection", "reauth-link", &id])
        .await
        .trim()
        .to_owned();

    let http = crate::reauth::no_redirects();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"type="password""#) && html.contains("Keyed CRM"),
        "{html}"
    );

    let post = |key: &'static str, origin: Option<&'static str>| {
        let mut request = http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("api_key={key}"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    // From another site: refused before anything is tried.
    assert_eq!(
        post("key-0123456789-new", Some("https://evil.example"))
            .await
            .unwrap()
            .status(),
        403
    );
    // A browser says so in Sec-Fetch-Site, whatever its Origin (our no-referrer pages make
    // that "null").
    for site in ["cross-site", "same-site"] {
        let refused = http
            .post(&link)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .header("origin", "null")
            .body("api_key=key-0123456789-new")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{site}");
    }
    // A key the provider refuses: the form again, in words, and nothing stored.
    let wrong = post("key-0123456789-typo", None).await.unwrap();
    assert_eq!(wrong.status(), 422);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("did not accept") && !html.contains("key-0123456789-typo"),
        "{html}"
    );
    let (_, shown) = platform
        .call("GET", &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(shown["status"], "broken");
    // The right one: stored, healthy, the pipeline resumed where it stopped.
    let right = post("key-0123456789-new", None).await.unwrap();
    assert_eq!(right.status(), 200);
    let html = right.text().await.unwrap();
    assert!(
        html.contains("Reconnected") && html.contains("page=9"),
        "{html}"
    );
    let (_, shown) = platform
        .call("GET", &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(shown["status"], "healthy", "{shown}");
    let (_, p) = platform
        .call("GET", &format!("/v1/pipelines/{}", pipeline.trim()), None)
        .await;
    assert_eq!(p["state"], "running", "{p}");
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "healthy", "the stored key works: {report}");
    // The link is used up.
    assert_eq!(http.get(&link).send().await.unwrap().status(), 410);
}

#[tokio::test]
async fn a_connect_link_of_a_key_provider_takes_the_key_on_its_form_and_creates_the_connection() {
    let provider = KeyedProvider::spawn("key-0123456789-good").await;
    let env = TestEnv::with_config(&provider.config());
    let platform = Platform::new(&env);
    let _daemon = env.spawn().await;
    let http = crate::reauth::no_redirects();
    let invite = |account: &str| {
        let body = json!({"provider": "keyed", "name": "Billing", "owner": "bo@example.com",
            "account": account, "external_id": format!("t/{account}")});
        let platform = &platform;
        async move {
            let (status, link) = platform.call("POST", "/v1/connect-links", Some(body)).await;
            assert_eq!(status, 201, "{link}");
            link["url"].as_str().unwrap().to_owned()
        }
    };
    let post = |link: String, key: &'static str| {
        http.post(link)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("api_key={key}"))
            .send()
    };
    let count = || async {
        let (_, page) = platform.call("GET", "/v1/connections", None).await;
        page["items"].as_array().unwrap().len()
    };

    let link = invite("acct-7").await;
    let page = http.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Connect Billing") && page.contains(r#"type="password""#),
        "{page}"
    );
    // A key the provider refuses: the form again, nothing created, the link still good.
    let wrong = post(link.clone(), "key-0000000000-typo").await.unwrap();
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().await.unwrap().contains("did not accept"));
    assert_eq!(count().await, 0);
    // A working key of another account than the link names: refused, nothing created.
    let other = invite("acct-9").await;
    let refused = post(other, "key-0123456789-good").await.unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("acct-7") && html.contains("acct-9"), "{html}");
    assert_eq!(count().await, 0);

    let done = post(link.clone(), "key-0123456789-good").await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Connected"));
    let (_, found) = platform
        .call("GET", "/v1/connections?external_id=t/acct-7", None)
        .await;
    let c = &found["items"][0];
    assert_eq!(c["account"], "acct-7", "{found}");
    assert_eq!(c["owner"], "bo@example.com");
    let id = c["id"].as_str().unwrap();
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "healthy", "the stored key works: {report}");
    assert_eq!(
        post(link, "key-0123456789-good").await.unwrap().status(),
        410,
        "used up"
    );
    assert_eq!(count().await, 1);
}

#[tokio::test]
async fn the_command_line_e_mails_an_invitation_whose_link_exists_only_in_the_e_mail() {
    let provider = KeyedProvider::spawn("key-0123456789-good").await;
    let env = TestEnv::with_config(&provider.config());
    let out = env
        .ok(&[
            "connection",
            "invite",
            "--provider",
            "keyed",
            "--name",
            "Billing",
            "--owner",
            "bo@example.com",
            "--email",
        ])
        .await;
    assert!(
        out.contains("bo@example.com") && !out.contains("/connect/"),
        "{out}"
    );
    assert_eq!(
        env.value("SELECT count(*) FROM connect_links").await,
        "0",
        "made when the e-mail is sent"
    );
    let _daemon = env.spawn().await;
    wait_until("the invitation", Duration::from_secs(30), || async {
        !read_dir_names(&env.path("mail")).is_empty()
    })
    .await;
    let mail = read_dir_names(&env.path("mail"));
    let message = crate::helpers::peers::decode_quoted_printable(
        &std::fs::read_to_string(env.path("mail").join(&mail[0])).unwrap(),
    );
    assert!(
        message.contains("Subject: Connect your Keyed CRM account"),
        "{message}"
    );
    assert!(message.contains("enter the Keyed CRM API key"), "{message}");
    let link = crate::helpers::link_in(&message, &format!("{}/connect/", env.base_url()));
    let page = reqwest::get(&link).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Connect Billing"));
    assert_eq!(env.value("SELECT count(*) FROM connect_links").await, "1");
}
