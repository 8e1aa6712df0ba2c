//! The owner's way back, end to end with the real oidc-provider (consent automated in the test
//! server) and aiosmtpd: e-mail → link → page → provider → callback → healthy, resumed.

use std::time::Duration;

use crate::helpers::peers::{CALLBACK, OidcServer, SmtpServer, free_port};
use crate::helpers::{Daemon, Db, TestEnv, wait_until};

struct Setup {
    oidc: OidcServer,
    env: TestEnv,
    base: String,
    conn: String,
}

/// oidc-provider whose client may come back to a daemon on its own port, and a connection for
/// `account` whose grant the user revoked.
async fn setup(smtp_port: Option<u16>) -> Setup {
    setup_on(Db::Sqlite, smtp_port).await
}

async fn setup_on(db: Db, smtp_port: Option<u16>) -> Setup {
    let (oidc, env, base) = install(db, smtp_port, "").await;
    let grant = oidc.grant("user-1").await;
    let conn = env.add_connection("ada@example.com", &grant).await;
    revoke_app(&oidc, "user-1").await;
    Setup {
        oidc,
        env,
        base,
        conn,
    }
}

/// oidc-provider whose client may come back to a daemon on its own port, and an installation
/// whose provider `acme` is that server, with `provider_extra` lines in its section.
pub async fn install(
    db: Db,
    smtp_port: Option<u16>,
    provider_extra: &str,
) -> (OidcServer, TestEnv, String) {
    install_with(db, smtp_port, provider_extra, false).await
}

/// As `install`; with `interactive`, the provider shows its own sign-in and consent pages.
pub async fn install_with(
    db: Db,
    smtp_port: Option<u16>,
    provider_extra: &str,
    interactive: bool,
) -> (OidcServer, TestEnv, String) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let oidc = OidcServer::spawn(serde_json::json!({
        "interactive": interactive,
        "clients": [{
            "client_id": "credwatch",
            "client_secret": "credwatch-secret",
            "redirect_uris": [CALLBACK, format!("{base}/oauth/callback")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }]
    }))
    .await;
    let mail = match smtp_port {
        Some(p) => format!(
            "[mail]\ntransport = \"smtp\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {p}\ntls = \"none\"\n"
        ),
        None => String::new(),
    };
    let env = TestEnv::with_config_on(
        db,
        &format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n\n{mail}\n[notices]\ndigest_window = \"1s\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"{base}/\"\n\n\
         [providers.acme]\ndisplay_name = \"Acme CRM\"\ntoken_url = \"{}\"\nauthorize_url = \"{}\"\n\
         revocation_url = \"{}\"\nclient_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n\
         scopes = \"openid email offline_access\"\nrotates_refresh_tokens = true\n\
         authorize_params = {{ prompt = \"consent\" }}\n{provider_extra}",
        oidc.url("/token"),
        oidc.url("/auth"),
        oidc.url("/token/revocation"),
        ),
    )
    .await;
    (oidc, env, base)
}

/// The account removes the app at the provider: its grants die.
pub async fn revoke_app(oidc: &OidcServer, account: &str) {
    reqwest::Client::new()
        .post(oidc.url(&format!("/test/accounts/{account}/revoke-app")))
        .send()
        .await
        .unwrap();
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs the link's button and returns where the provider was asked to send the owner.
pub async fn start(link: &str) -> String {
    let r = no_redirects().post(link).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap());
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Goes through the provider as a browser (its consent is automated) and stops at our
/// callback, returning its URL.
pub async fn through_provider(authorize: &str, base: &str) -> String {
    crate::helpers::peers::follow_until(authorize, &format!("{base}/oauth/callback")).await
}

pub async fn get(url: &str) -> (u16, String) {
    let r = no_redirects().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn broken(env: &TestEnv, daemon: &mut Option<Daemon>) {
    if daemon.is_none() {
        *daemon = Some(env.spawn().await);
    }
    wait_until(
        "the connection to break",
        Duration::from_secs(30),
        || async { env.value("SELECT status FROM connections").await == "broken" },
    )
    .await;
}

crate::on_both_backends!(
    an_owner_reconnects_from_the_email_and_the_pipelines_resume_where_they_stopped
);

async fn an_owner_reconnects_from_the_email_and_the_pipelines_resume_where_they_stopped(db: Db) {
    let smtp = SmtpServer::spawn().await;
    let Setup {
        oidc: _oidc,
        env,
        base,
        conn,
    } = setup_on(db, Some(smtp.port)).await;
    let mut positions = Vec::new();
    for (name, position) in [
        ("CRM to search", "offset=9000"),
        ("CRM to warehouse", "cursor=17"),
    ] {
        env.ok(&[
            "pipeline",
            "add",
            "--name",
            name,
            "--connection",
            &conn,
            "--position",
            position,
        ])
        .await;
        positions.push(position.to_owned());
    }
    let mut daemon = None;
    broken(&env, &mut daemon).await;
    wait_until("the e-mail", Duration::from_secs(30), || async {
        !smtp.messages().is_empty()
    })
    .await;
    let message = smtp.messages().remove(0);
    let at = message
        .find(&format!("{base}/reauthorize/"))
        .expect("the link");
    let link: String = message[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();

    // A GET shows the page and starts nothing (mail scanners prefetch links).
    let (status, page) = get(&link).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("CRM") && page.contains("Acme CRM") && page.contains("user-1"),
        "{page}"
    );
    assert!(page.contains(r#"<form method="post">"#), "{page}");
    assert_eq!(env.value("SELECT COUNT(*) FROM oauth_sessions").await, "0");

    let authorize = start(&link).await;
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("login_hint=user-1"), "{authorize}");
    let callback = through_provider(&authorize, &base).await;
    let (status, page) = get(&callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Reconnected"), "{page}");

    assert_eq!(env.value("SELECT status FROM connections").await, "healthy");
    let pipelines = env
        .rows("SELECT state, paused_at_position FROM pipelines ORDER BY name")
        .await;
    assert_eq!(
        pipelines,
        [
            ["running", positions[0].as_str()],
            ["running", positions[1].as_str()]
        ]
    );
    let resumed = env
        .rows("SELECT position FROM pipeline_events WHERE kind = 'resumed' ORDER BY position")
        .await;
    assert_eq!(
        resumed,
        [["cursor=17"], ["offset=9000"]],
        "resumed at the paused positions"
    );
    wait_until(
        "the Reconnected e-mail",
        Duration::from_secs(30),
        || async {
            smtp.messages()
                .iter()
                .any(|m| m.contains("Subject: Reconnected"))
        },
    )
    .await;
    // The new grant works: the next check refreshes it.
    let r = env.check(&conn).await;
    assert_eq!(r["category"], "healthy", "{r}");

    // Replaying the link or the callback, a tampered link, a forged state: all refused.
    let (status, page) = get(&link).await;
    assert_eq!(status, 410, "{page}");
    assert_eq!(get(&callback).await.0, 400, "a state is single use");
    let tampered = format!(
        "{}x",
        link.trim_end_matches(|c: char| c != '/').to_owned() + "AAAA"
    );
    assert_eq!(get(&tampered).await.0, 404);
    let (status, page) = get(&format!("{base}/oauth/callback?state=forged&code=abc")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("Nothing was changed"), "{page}");
    daemon.unwrap().signal(libc::SIGTERM);
}

#[tokio::test]
async fn another_account_or_a_cancel_leaves_the_connection_broken_and_says_why() {
    let Setup {
        oidc: _oidc,
        env,
        base,
        conn,
    } = setup(None).await;
    let mut daemon = None;
    broken(&env, &mut daemon).await;
    let link = env.ok(&["connection", "reauth-link", &conn]).await;
    assert!(link.starts_with(&format!("{base}/reauthorize/")), "{link}");

    // Signing in as someone else: refused, nothing changes, the link still works.
    let authorize = start(&link)
        .await
        .replace("login_hint=user-1", "login_hint=user-2");
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("different account") && page.contains("user-2"),
        "{page}"
    );
    assert_eq!(env.value("SELECT status FROM connections").await, "broken");

    // Cancel at the provider: a friendly page, still broken.
    let authorize = start(&link)
        .await
        .replace("login_hint=user-1", "login_hint=deny");
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("You cancelled"), "{page}");
    assert_eq!(env.value("SELECT status FROM connections").await, "broken");
    assert_eq!(
        env.value("SELECT COUNT(*) FROM incidents WHERE closed_at IS NULL")
            .await,
        "1"
    );

    // The right account still gets through with the same link.
    let authorize = start(&link).await;
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(env.value("SELECT status FROM connections").await, "healthy");
    daemon.unwrap().signal(libc::SIGTERM);
}

#[tokio::test]
async fn removing_with_revoke_ends_the_grant_at_the_provider() {
    let Setup {
        oidc, env, conn: _, ..
    } = setup(None).await;
    let grant = oidc.grant("user-5").await;
    let refresh: String =
        serde_json::from_str::<serde_json::Value>(&grant).unwrap()["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    let id = env.add_connection("ada@example.com", &grant).await;
    let out = env.ok(&["connection", "remove", &id, "--revoke"]).await;
    assert!(out.contains("revoked"), "{out}");
    let v: serde_json::Value = reqwest::Client::new()
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
    let out = env.cli(&["connection", "show", &id]).await;
    assert_eq!(out.status.code(), Some(65), "removed");
}

#[tokio::test]
async fn a_connection_of_unknown_account_is_never_reauthorized_by_whoever_signs_in() {
    let (oidc, env, base) = install(Db::Sqlite, None, "").await;
    // A grant that names no account (no id_token): refused unless the operator insists.
    let mut grant: serde_json::Value = serde_json::from_str(&oidc.grant("user-1").await).unwrap();
    grant.as_object_mut().unwrap().remove("id_token");
    let grant = grant.to_string();
    let add = [
        "connection",
        "add",
        "--provider",
        "acme",
        "--name",
        "CRM",
        "--owner",
        "ada@example.com",
        "--tokens",
        "-",
    ];
    let out = env.cli_with_stdin(&add, grant.as_bytes()).await;
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be known"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut anyway = add.to_vec();
    anyway.push("--allow-unknown-account");
    let conn = env.cli_with_stdin(&anyway, grant.as_bytes()).await;
    assert!(conn.status.success());
    let conn = String::from_utf8(conn.stdout).unwrap().trim().to_owned();
    revoke_app(&oidc, "user-1").await;
    let mut daemon = None;
    broken(&env, &mut daemon).await;

    // Whoever signs in, the grant cannot be shown to be the same account: refused.
    let link = env.ok(&["connection", "reauth-link", &conn]).await;
    for who in ["user-2", "user-1"] {
        let authorize = format!("{}&login_hint={who}", start(&link).await);
        let (status, page) = get(&through_provider(&authorize, &base).await).await;
        assert_eq!(status, 403, "{who}: {page}");
        assert!(page.contains("cannot be reconnected here"), "{page}");
        assert_eq!(env.value("SELECT status FROM connections").await, "broken");
    }
    daemon.unwrap().signal(libc::SIGTERM);
}

#[tokio::test]
async fn an_account_learned_from_the_probe_at_add_time_guards_the_reauthorization() {
    let (oidc, env, base) = install(
        Db::Sqlite,
        None,
        &format!(
            "probe_url = \"{}\"\naccount_from = \"probe:/sub\"\n",
            "PROBE"
        ),
    )
    .await;
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace("PROBE", &oidc.url("/me"))).unwrap();
    // No id_token, no --account: the probe names the account.
    let mut grant: serde_json::Value = serde_json::from_str(&oidc.grant("user-1").await).unwrap();
    grant.as_object_mut().unwrap().remove("id_token");
    let conn = env
        .add_connection("ada@example.com", &grant.to_string())
        .await;
    assert_eq!(env.value("SELECT account FROM connections").await, "user-1");
    revoke_app(&oidc, "user-1").await;
    let mut daemon = None;
    broken(&env, &mut daemon).await;

    let link = env.ok(&["connection", "reauth-link", &conn]).await;
    let authorize = start(&link)
        .await
        .replace("login_hint=user-1", "login_hint=user-2");
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 403, "{page}");
    assert!(
        page.contains("different account") && page.contains("user-2"),
        "{page}"
    );
    assert_eq!(env.value("SELECT status FROM connections").await, "broken");

    let authorize = start(&link).await;
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(env.value("SELECT status FROM connections").await, "healthy");
    daemon.unwrap().signal(libc::SIGTERM);
}

#[tokio::test]
async fn owner_pages_are_never_framed_cached_or_sniffed() {
    let Setup {
        oidc: _oidc,
        env,
        base,
        conn,
    } = setup(None).await;
    let daemon = env.spawn().await;
    let link = env.ok(&["connection", "reauth-link", &conn]).await;
    let client = no_redirects();
    let answers = [
        client.get(&link).send().await.unwrap(),
        client.post(&link).send().await.unwrap(),
        client
            .get(format!("{base}/oauth/callback?state=forged&code=x"))
            .send()
            .await
            .unwrap(),
        client
            .get(format!("{base}/reauthorize/unknown"))
            .send()
            .await
            .unwrap(),
    ];
    assert_eq!(answers[1].status().as_u16(), 303);
    for r in &answers {
        let h = r.headers();
        let what = format!("{} {}", r.status(), r.url());
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{what}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    }
    daemon.signal(libc::SIGTERM);
}
