//! When a grant dies: the owner gets one e-mail with a reauthorize link, through the real
//! aiosmtpd, however many sweeps and restarts follow; SMTP outages delay it, never lose it.

use std::time::Duration;

use sha2::Digest;

use crate::helpers::peers::{OidcServer, SmtpServer};
use crate::helpers::{Daemon, Db, TestEnv, wait_until};

fn env_for(oidc: &OidcServer, smtp_port: u16, digest: &str) -> TestEnv {
    TestEnv::with_config(&config_for(oidc, smtp_port, digest))
}

fn config_for(oidc: &OidcServer, smtp_port: u16, digest: &str) -> String {
    format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n\n\
         [mail]\ntransport = \"smtp\"\nfrom = \"credwatch <credwatch@example.com>\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout = \"5s\"\n\n\
         [notices]\ndigest_window = \"{digest}\"\n\n\
         [http]\nlisten = \"127.0.0.1:{}\"\npublic_base_url = \"https://cw.example/\"\n\n\
         [providers.acme]\ndisplay_name = \"Acme CRM\"\ntoken_url = \"{}\"\n\
         authorize_url = \"{}\"\nclient_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n\
         rotates_refresh_tokens = true\n",
        crate::helpers::peers::free_port(),
        oidc.url("/token"),
        oidc.url("/auth"),
    )
}

async fn revoke(oidc: &OidcServer, account: &str) {
    let r = reqwest::Client::new()
        .post(oidc.url(&format!("/test/accounts/{account}/revoke-app")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn sweeps(daemon: &mut Daemon, n: usize) {
    let seen = daemon
        .log_until("a sweep", Duration::from_secs(30), |log| {
            log.iter().any(|l| l.contains("sweep finished"))
        })
        .await
        .iter()
        .filter(|l| l.contains("sweep finished"))
        .count();
    daemon
        .log_until(
            &format!("{n} more sweeps"),
            Duration::from_secs(30),
            |log| log.iter().filter(|l| l.contains("sweep finished")).count() >= seen + n,
        )
        .await;
}

fn link_token(message: &str) -> String {
    let start = message
        .find("https://cw.example/reauthorize/")
        .expect("a reauthorize link")
        + "https://cw.example/reauthorize/".len();
    message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

crate::on_both_backends!(a_revoked_grant_pauses_its_pipelines_and_emails_the_owner_exactly_once);

async fn a_revoked_grant_pauses_its_pipelines_and_emails_the_owner_exactly_once(db: Db) {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let smtp = SmtpServer::spawn().await;
    let grant = oidc.grant("user-1").await;
    let env = TestEnv::with_config_on(db, &config_for(&oidc, smtp.port, "1s")).await;
    let conn = env.add_connection("ada@example.com", &grant).await;
    for (name, position) in [
        ("CRM to warehouse", "cursor=17"),
        ("CRM to search", "offset=9000"),
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
    }
    revoke(&oidc, "user-1").await;

    let mut daemon = env.spawn().await;
    wait_until("the owner's e-mail", Duration::from_secs(30), || async {
        !smtp.messages().is_empty()
    })
    .await;
    assert_eq!(env.value("SELECT status FROM connections").await, "broken");
    let paused = env
        .rows("SELECT state, paused_at_position FROM pipelines ORDER BY name")
        .await;
    assert_eq!(paused, [["paused", "offset=9000"], ["paused", "cursor=17"]]);

    let message = &smtp.messages()[0];
    assert!(
        message.contains(r#"Subject: Credentials expired in source "CRM""#),
        "{message}"
    );
    assert!(message.contains("To: ada@example.com"), "{message}");
    assert!(message.contains("Acme CRM"), "{message}");
    assert!(
        message.contains("withdrawn"),
        "the category in words: {message}"
    );
    assert!(
        message.contains("cursor=17") && message.contains("offset=9000"),
        "{message}"
    );
    assert!(message.contains("No data is flowing"), "{message}");
    assert!(
        message.contains("text/html"),
        "a text and an HTML part: {message}"
    );
    let token = link_token(message);
    assert!(token.len() >= 43, "256 bits: {token}");
    let hash: String = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let stored = env.value("SELECT token_hash FROM reauth_links").await;
    assert_eq!(stored, format!("[{hash}]"), "only the hash is stored");

    // More sweeps, then a restart: nothing more is sent.
    sweeps(&mut daemon, 3).await;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
    let mut daemon = env.spawn().await;
    sweeps(&mut daemon, 3).await;
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(
        env.value("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL")
            .await,
        "1"
    );
}

#[tokio::test]
async fn a_notice_queued_while_smtp_is_down_arrives_once_it_is_back() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let smtp = SmtpServer::spawn().await;
    let port = smtp.port;
    drop(smtp);
    let grant = oidc.grant("user-2").await;
    let env = env_for(&oidc, port, "1s");
    env.add_connection("ada@example.com", &grant).await;
    revoke(&oidc, "user-2").await;

    let mut daemon = env.spawn().await;
    daemon
        .log_until("a failed delivery", Duration::from_secs(30), |log| {
            log.iter()
                .any(|l| l.contains("mailer: not delivered, will retry"))
        })
        .await;
    let smtp = SmtpServer::spawn_on(port).await;
    wait_until(
        "the e-mail after SMTP is back",
        Duration::from_secs(60),
        || async { !smtp.messages().is_empty() },
    )
    .await;
    sweeps(&mut daemon, 2).await;
    assert_eq!(smtp.messages().len(), 1, "sent once");
    assert!(smtp.messages()[0].contains("Credentials expired"));
}

#[tokio::test]
async fn three_connections_of_one_owner_broken_within_the_window_make_one_digest() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let smtp = SmtpServer::spawn().await;
    let env = env_for(&oidc, smtp.port, "4s");
    for account in ["user-a", "user-b", "user-c"] {
        let grant = oidc.grant(account).await;
        env.add_connection("ada@example.com", &grant).await;
        revoke(&oidc, account).await;
    }
    let other = oidc.grant("user-d").await;
    env.add_connection("bob@example.com", &other).await;
    revoke(&oidc, "user-d").await;

    let mut daemon = env.spawn().await;
    wait_until("two e-mails", Duration::from_secs(30), || async {
        smtp.messages().len() >= 2
    })
    .await;
    sweeps(&mut daemon, 3).await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "one digest for ada, one notice for bob");
    let ada = messages
        .iter()
        .find(|m| m.contains("To: ada@example.com"))
        .expect("ada's digest");
    assert!(
        ada.contains("Subject: Credentials expired in 3 sources"),
        "{ada}"
    );
    assert_eq!(
        ada.matches("https://cw.example/reauthorize/").count(),
        3,
        "a link per source in the text part"
    );
    assert_eq!(
        ada.matches("<a href=").count(),
        3,
        "and a button per source in the HTML part"
    );
    // Marked sent once the server took them (just after it did).
    wait_until(
        "every notice marked sent",
        Duration::from_secs(10),
        || async {
            env.rows("SELECT kind, sent_at IS NOT NULL FROM outbox ORDER BY id")
                .await
                == [["credentials_expired", "1"]; 4]
        },
    )
    .await;
}

/// The .eml files the file transport wrote, decoded like the SMTP ones.
fn eml(env: &TestEnv) -> Vec<String> {
    let dir = env.path("mail");
    crate::helpers::read_dir_names(&dir)
        .iter()
        .filter(|n| n.ends_with(".eml"))
        .filter_map(|n| std::fs::read_to_string(dir.join(n)).ok())
        .map(|m| {
            m.replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

fn fake_env(fake: &crate::helpers::fake::FakeProvider, extra: &str) -> TestEnv {
    TestEnv::with_config(&format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n\n[operator]\nemail = \"oncall@example.com\"\n\n{extra}\n\
         [providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:9/authorize\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n",
        fake.token_url()
    ))
}

const TOKENS: &str = r#"{"access_token":"fake-at-0-0123456789","refresh_token":"fake-rt-0-0123456789","expires_in":3600}"#;

#[tokio::test]
async fn reminders_follow_while_broken_then_stop_and_a_reconnection_is_announced() {
    use crate::helpers::fake::{FakeProvider, Reply};
    let fake = FakeProvider::spawn().await;
    let env = fake_env(
        &fake,
        "[notices]\ndigest_window = \"1s\"\nreminders = [\"2s\", \"4s\"]\n",
    );
    let conn = env.add_connection("ada@example.com", TOKENS).await;
    let pipe = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "CRM to warehouse",
            "--connection",
            &conn,
            "--position",
            "cursor=5",
        ])
        .await;
    fake.script([Reply::Json(400, r#"{"error":"invalid_grant"}"#)]);
    let mut daemon = env.spawn().await;
    wait_until(
        "the notice and two reminders",
        Duration::from_secs(30),
        || async { eml(&env).len() >= 3 },
    )
    .await;
    sweeps(&mut daemon, 4).await;
    let mails = eml(&env);
    assert_eq!(mails.len(), 3, "no reminder after the last one");
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.contains("Subject: Reminder: Credentials expired"))
            .count(),
        2
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));

    // The platform went on reading up to cursor=9 while paused: that is where it resumes.
    env.ok(&["pipeline", "position", &pipe, "cursor=9"]).await;
    // The grant works again (a recheck, or in the next issue a reauthorization).
    let r = env.check(&conn).await;
    assert_eq!(r["resumed"], serde_json::json!([pipe]), "{r}");
    let mut daemon = env.spawn().await;
    wait_until(
        "the reconnected notice",
        Duration::from_secs(30),
        || async { eml(&env).iter().any(|m| m.contains("Subject: Reconnected")) },
    )
    .await;
    sweeps(&mut daemon, 2).await;
    let reconnected: Vec<String> = eml(&env)
        .into_iter()
        .filter(|m| m.contains("Subject: Reconnected"))
        .collect();
    assert_eq!(reconnected.len(), 1);
    assert!(
        reconnected[0].contains("from position cursor=9"),
        "{}",
        reconnected[0]
    );
    assert_eq!(
        env.value("SELECT position FROM pipeline_events WHERE kind = 'resumed'")
            .await,
        "cursor=9"
    );
    assert_eq!(
        env.value(
            "SELECT COUNT(*) FROM reauth_links WHERE expires_at > strftime('%s','now') * 1000"
        )
        .await,
        "0",
        "the incident's links end with it"
    );
}

#[tokio::test]
async fn owners_are_warned_before_a_refresh_token_ends_and_operators_about_a_refused_client() {
    use crate::helpers::fake::{FakeProvider, Reply};
    let fake = FakeProvider::spawn().await;
    let env = fake_env(&fake, "[notices]\nexpiring_soon = \"14d\"\n");
    env.add_connection(
        "ada@example.com",
        r#"{"access_token":"at-0123456789","refresh_token":"rt-0123456789","expires_in":3600,"refresh_token_expires_in":864000}"#,
    )
    .await;
    fake.set_default(Reply::Json(401, r#"{"error":"invalid_client"}"#));
    let mut daemon = env.spawn().await;
    wait_until("two e-mails", Duration::from_secs(30), || async {
        eml(&env).len() >= 2
    })
    .await;
    sweeps(&mut daemon, 3).await;
    let mails = eml(&env);
    assert_eq!(mails.len(), 2, "each once");
    let expiring = mails
        .iter()
        .find(|m| m.contains("To: ada@example.com"))
        .expect("owner's warning");
    assert!(expiring.contains("needs reconnecting by"), "{expiring}");
    assert!(
        expiring.contains("9 days") || expiring.contains("10 days"),
        "{expiring}"
    );
    let alert = mails
        .iter()
        .find(|m| m.contains("To: oncall@example.com"))
        .expect("operator alert");
    assert!(
        alert.contains(r#"Subject: credwatch: provider "acme" refuses our OAuth client"#),
        "{alert}"
    );
    assert!(alert.contains("invalid_client"), "{alert}");
    // Every e-mail is proper MIME (UTF-8 arrives intact) and has its own Message-ID.
    let mut ids = std::collections::BTreeSet::new();
    for mail in &mails {
        assert!(mail.contains("MIME-Version: 1.0"), "{mail}");
        assert!(mail.contains("charset=utf-8"), "{mail}");
        let id = mail
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <"))
            .unwrap_or_else(|| panic!("no Message-ID: {mail}"));
        assert!(id.contains('@') && id.ends_with('>'), "{id}");
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), mails.len());
}

#[tokio::test]
async fn a_provider_outage_alerts_the_operator_once_and_breaks_nothing() {
    use crate::helpers::fake::{FakeProvider, Reply};
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Json(503, "{}"));
    let env = fake_env(&fake, "");
    for _ in 0..6 {
        env.add_connection("ada@example.com", TOKENS).await;
    }
    let mut daemon = env.spawn().await;
    wait_until("the operator's e-mail", Duration::from_secs(30), || async {
        !eml(&env).is_empty()
    })
    .await;
    sweeps(&mut daemon, 2).await;
    let mails = eml(&env);
    assert_eq!(mails.len(), 1, "only the operator hears of it");
    assert!(mails[0].contains("To: oncall@example.com"), "{}", mails[0]);
    assert!(
        mails[0].contains(r#"Subject: credwatch: provider "acme" is failing"#),
        "{}",
        mails[0]
    );
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE status = 'degraded'")
            .await,
        "6"
    );
}

#[tokio::test]
async fn an_address_the_server_refuses_for_good_is_recorded_and_not_retried() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let smtp = SmtpServer::spawn().await;
    let grant = oidc.grant("user-9").await;
    let env = env_for(&oidc, smtp.port, "1s");
    env.add_connection("gone@example.com", &grant).await;
    revoke(&oidc, "user-9").await;
    let mut daemon = env.spawn().await;
    daemon
        .log_until("the refusal", Duration::from_secs(30), |log| {
            log.iter()
                .any(|l| l.contains("refused the e-mail for good"))
        })
        .await;
    sweeps(&mut daemon, 3).await;
    let row = env
        .rows("SELECT attempts, failed_at IS NOT NULL, sent_at IS NULL, last_error FROM outbox")
        .await
        .remove(0);
    assert_eq!(&row[..3], ["1", "1", "1"], "{row:?}");
    assert!(row[3].contains("no such mailbox"), "{row:?}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn no_reconnected_email_for_an_outage_the_owner_never_heard_of() {
    use crate::helpers::fake::{FakeProvider, Reply};
    let fake = FakeProvider::spawn().await;
    // The notice waits an hour for others to share its e-mail; the grant is back before that.
    let env = fake_env(&fake, "[notices]\ndigest_window = \"1h\"\n");
    let conn = env.add_connection("ada@example.com", TOKENS).await;
    fake.script([Reply::Json(400, r#"{"error":"invalid_grant"}"#)]);
    assert_eq!(env.check(&conn).await["after"], "broken");
    assert_eq!(env.check(&conn).await["after"], "healthy");
    let mut daemon = env.spawn().await;
    wait_until(
        "the reconnected notice handled",
        Duration::from_secs(30),
        || async {
            env.value(
                "SELECT COUNT(*) FROM outbox WHERE kind = 'reconnected' AND sent_at IS NOT NULL",
            )
            .await
                == "1"
        },
    )
    .await;
    sweeps(&mut daemon, 2).await;
    assert!(eml(&env).is_empty(), "{:?}", eml(&env));
    assert!(
        env.value("SELECT last_error FROM outbox WHERE kind = 'reconnected'")
            .await
            .contains("never told")
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
}

#[tokio::test]
async fn a_server_refusing_every_message_is_an_outage_retried_not_a_refused_address() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let refuse = tempfile::NamedTempFile::new().unwrap();
    let smtp = SmtpServer::spawn_refusing_data(refuse.path()).await;
    let grant = oidc.grant("user-8").await;
    let env = env_for(&oidc, smtp.port, "1s");
    env.add_connection("ada@example.com", &grant).await;
    revoke(&oidc, "user-8").await;
    let mut daemon = env.spawn().await;
    wait_until("a refused attempt", Duration::from_secs(30), || async {
        env.rows("SELECT attempts, last_error FROM outbox")
            .await
            .first()
            .is_some_and(|r| r[0] != "0" && r[1].contains("554"))
    })
    .await;
    assert_eq!(
        env.value("SELECT failed_at IS NULL FROM outbox").await,
        "1",
        "kept for a retry"
    );
    // The server takes mail again: the notice arrives at its next attempt (10 s later).
    let path = refuse.path().to_owned();
    drop(refuse);
    assert!(!path.exists());
    wait_until("the notice delivered", Duration::from_secs(40), || async {
        !smtp.messages().is_empty()
    })
    .await;
    sweeps(&mut daemon, 1).await;
    assert_eq!(smtp.messages().len(), 1);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
}
