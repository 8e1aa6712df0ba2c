//! The README's walkthrough, on `config/dev.toml` itself (ports moved, sweep every second): a
//! newcomer connects through the development provider's consent page, revokes the grant there,
//! sees the pipeline paused and the e-mail in `var/mail/`, opens its link and consents again,
//! and the pipeline resumes. Driven in headless Chromium, as a newcomer clicks through it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::browser::Browser;
use crate::helpers::peers::{decode_quoted_printable, free_port};
use crate::helpers::{TestEnv, link_in, read_dir_names, wait_until};

/// The repository's `config/dev.toml` in a directory of its own, on free ports.
fn dev_installation() -> (TestEnv, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev.toml"))
            .expect("config/dev.toml");
    let (http, api, provider) = (free_port(), free_port(), free_port());
    let config = config
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{api}"))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{provider}"))
        .replace("sweep = \"*/10 * * * * *\"", "sweep = \"* * * * * *\"");
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let path = dir.path().join("config/dev.toml");
    std::fs::write(&path, config).unwrap();
    let env = TestEnv {
        dir,
        config: path,
        postgres: None,
    };
    (
        env,
        format!("http://127.0.0.1:{http}"),
        format!("http://127.0.0.1:{provider}"),
    )
}

async fn status(env: &TestEnv) -> Value {
    serde_json::from_str(&env.ok(&["status", "--json"]).await).expect("status JSON")
}

async fn mails(env: &TestEnv) -> Vec<String> {
    let dir = env.dir.path().join("var/mail");
    read_dir_names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".eml"))
        .map(|n| decode_quoted_printable(&std::fs::read_to_string(dir.join(n)).unwrap()))
        .collect()
}

/// On the development provider's consent page: allow as ada.
async fn consent_as_ada(browser: &mut Browser, shot: &str) {
    let page = browser.page_with_heading("Sign in and allow access").await;
    assert!(
        page.contains("credwatch-demo") && page.contains("grace@example.com"),
        "{page}"
    );
    browser.screenshot(shot).await;
    browser.click("button[value=\"ada@example.com\"]").await;
}

#[tokio::test]
async fn the_readme_loop_runs_on_the_development_provider_in_a_browser() {
    let (env, base, provider) = dev_installation();
    let daemon = env.spawn().await;

    // 1. Connect, through a connect link and the provider's consent page.
    let invite = env
        .ok(&[
            "connection",
            "invite",
            "--provider",
            "demo",
            "--name",
            "Sales CRM",
            "--owner",
            "ada@example.com",
        ])
        .await;
    let link = link_in(&invite, &format!("{base}/connect/"));
    let mut browser = Browser::start("dev_provider_readme_loop").await;
    browser.open(&link).await;
    browser.page_with_heading("Connect Sales CRM").await;
    browser.click("button[type=submit]").await;
    consent_as_ada(&mut browser, "consent").await;
    browser.page_with_heading("Connected").await;
    browser.screenshot("connected").await;

    let s = status(&env).await;
    let id = s["connections"][0]["id"]
        .as_str()
        .expect("a connection")
        .to_owned();
    assert_eq!(s["connections"][0]["account"], "ada@example.com", "{s}");
    let pipeline = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "CRM to warehouse",
            "--connection",
            &id,
            "--position",
            "cursor=17",
        ])
        .await;

    // 2. The daemon refreshes it (the provider counts the rotation).
    wait_until(
        "the first scheduled check",
        Duration::from_secs(30),
        || async { !status(&env).await["connections"][0]["last_check"].is_null() },
    )
    .await;
    browser.open(&format!("{provider}/")).await;
    let grants = browser.page_with_heading("Grants").await;
    assert!(
        grants.contains("ada@example.com") && grants.contains("once, last"),
        "{grants}"
    );

    // 3. Revoke it on the provider's page; a check now finds out.
    browser.screenshot("grants").await;
    browser.click("form[action$=\"/revoke\"] button").await;
    let revoked = browser.page_with_heading("Grants").await;
    assert!(revoked.contains("revoked"), "{revoked}");
    let checked = env.ok(&["check", &id]).await;
    assert!(
        checked.contains("broken") && checked.contains("revoked"),
        "{checked}"
    );
    let s = status(&env).await;
    assert_eq!(s["pipelines"][0]["state"], "paused", "{s}");
    assert_eq!(s["pipelines"][0]["paused_at_position"], "cursor=17", "{s}");

    // 4. The owner's e-mail lands in var/mail/ once the digest window (10 s) has passed.
    wait_until(
        "the Credentials expired e-mail",
        Duration::from_secs(60),
        || async { !mails(&env).await.is_empty() },
    )
    .await;
    let mail = mails(&env).await.remove(0);
    assert!(mail.contains("To: ada@example.com"), "{mail}");
    assert!(mail.contains("Credentials expired"), "{mail}");
    let reauthorize = link_in(&mail, &format!("{base}/reauthorize/"));

    // 5. Open it, consent again: healthy, and the pipeline resumes where it stopped.
    browser.open(&reauthorize).await;
    browser.page_with_heading("Reconnect Sales CRM").await;
    browser.click("button[type=submit]").await;
    consent_as_ada(&mut browser, "consent-again").await;
    let done = browser.page_with_heading("Reconnected").await;
    browser.screenshot("reconnected").await;
    assert!(done.contains("CRM to warehouse"), "{done}");
    let s = status(&env).await;
    assert_eq!(s["connections"][0]["status"], "healthy", "{s}");
    assert_eq!(s["pipelines"][0]["id"], pipeline.as_str(), "{s}");
    assert_eq!(s["pipelines"][0]["state"], "running", "{s}");
    browser.close().await;

    // The provider's command revokes by account, and says so when there is nothing to revoke.
    let out = env.ok(&["dev-provider", "revoke", "ada@example.com"]).await;
    assert_eq!(out, "revoked 1 grant of ada@example.com");
    let out = env.ok(&["dev-provider", "revoke", "ada@example.com"]).await;
    assert_eq!(out, "ada@example.com has no live grant");
    drop(daemon);
    let out = env
        .cli(&["dev-provider", "revoke", "ada@example.com"])
        .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is `credwatch run` running"), "{err}");
}

#[tokio::test]
async fn the_development_provider_listens_on_loopback_only() {
    let (env, _, _) = dev_installation();
    let config = std::fs::read_to_string(&env.config).unwrap();
    let exposed = regex_free_replace(&config, "listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&env.config, exposed).unwrap();
    let out = env.cli(&["config", "check"]).await;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dev_provider.listen: must be a loopback address"),
        "{err}"
    );
}

/// Replaces the `[dev_provider]` section's `from` only (the other listeners keep theirs).
fn regex_free_replace(config: &str, from: &str, to: &str) -> String {
    let at = config
        .find("[dev_provider]")
        .expect("a [dev_provider] section");
    let (head, tail) = config.split_at(at);
    format!("{head}{}", tail.replacen(from, to, 1))
}

#[tokio::test]
async fn the_development_provider_sends_codes_only_to_its_client_on_this_machine() {
    let (env, _, provider) = dev_installation();
    let _daemon = env.spawn().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |query: &str| http.get(format!("{provider}/authorize?{query}")).send();
    let good = "response_type=code&client_id=credwatch-demo&code_challenge=abc&code_challenge_method=S256&state=s1";

    let r = authorize(&format!(
        "{good}&redirect_uri=https%3A%2F%2Fattacker.example%2Fcb"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "a code never leaves the machine");
    let r = authorize(&good.replace("credwatch-demo", "someone-else"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = authorize("response_type=code&client_id=credwatch-demo&state=s1&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcb")
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "without PKCE the client is told why");
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:1/cb?error=invalid_request")
            && location.ends_with("state=s1"),
        "{location}"
    );

    let r = http
        .post(format!("{provider}/token"))
        .basic_auth("credwatch-demo", Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let r = http
        .get(format!("{provider}/userinfo"))
        .bearer_auth("dev_at_unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
