//! Faults around the checks, reproduced the way they happen: a hostile Retry-After, a mail
//! server that accepts and never answers, a disk that fills up, a corrupted row, idle sockets
//! under a low descriptor limit, a provider quoting secrets back. None may destroy a healthy
//! grant, blame its owner, or leave the daemon silently dead.

use std::time::Duration;

use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::{TestEnv, wait_until};

const TOKENS: &str = r#"{"access_token":"fake-at-0-0123456789","refresh_token":"fake-rt-0-0123456789","expires_in":3600}"#;

fn fake_provider(fake: &FakeProvider) -> String {
    format!(
        "\n[providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:9/authorize\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n",
        fake.token_url()
    )
}

#[tokio::test]
async fn a_hostile_retry_after_parks_a_connection_no_longer_than_backoff_max() {
    let fake = FakeProvider::spawn().await;
    let env = TestEnv::with_config(&format!(
        "\n[schedule]\nsweep = \"0 * * * * *\"\nbackoff_max = \"1h\"\n{}",
        fake_provider(&fake)
    ));
    let id = env.add_connection("ada@example.com", TOKENS).await;
    for value in [
        "99999999999",
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        fake.script([Reply::RetryAfter(value)]);
        let out = env.cli(&["check", &id, "--json"]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "Retry-After {value}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("Retry-After {value}: report {stdout:?}: {e}"));
        assert_eq!(r["category"], "rate_limited", "{r}");
        let next: i64 = env
            .value("SELECT next_check_at FROM connections")
            .await
            .parse()
            .unwrap();
        let hour_from_now = chrono::Utc::now().timestamp_millis() + 3_600_000;
        assert!(
            next <= hour_from_now,
            "Retry-After {value} parked it until {next}"
        );
    }
    // A good answer heals it as usual.
    fake.script([Reply::Tokens]);
    assert_eq!(env.check(&id).await["after"], "healthy");
}
#[tokio::test]
async fn a_mail_server_that_never_answers_holds_nothing_up() {
    // Accepts every connection and never says a word.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp_port = hung.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Json(400, r#"{"error":"invalid_grant"}"#));
    let env = TestEnv::with_config(&format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n\n[notices]\ndigest_window = \"1s\"\n\n\
         [mail]\ntransport = \"smtp\"\nfrom = \"credwatch <credwatch@example.com>\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout = \"1s\"\n{}",
        fake_provider(&fake)
    ));
    env.add_connection("ada@example.com", TOKENS).await;
    let daemon = env.spawn().await;
    wait_until(
        "a send attempt that gave up on the silent server",
        Duration::from_secs(30),
        || async {
            env.rows("SELECT attempts, last_error FROM outbox WHERE kind = 'credentials_expired'")
                .await
                .first()
                .is_some_and(|r| r[0] != "0" && r[1].contains("within 1s"))
        },
    )
    .await;
    // Stopping does not wait for the server either.
    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    // Retried later, not given up: the server never refused anything.
    assert_eq!(
        env.rows("SELECT sent_at, failed_at FROM outbox WHERE kind = 'credentials_expired'")
            .await,
        [["NULL", "NULL"]]
    );
    silent.abort();
}

/// A small tmpfs of our own, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk refuses more.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn readyz(base: &str) -> (u16, String) {
    match reqwest::get(format!("{base}/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test]
async fn a_full_disk_makes_the_daemon_unready_and_it_recovers_on_its_own() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let disk = SmallDisk::mount("8m").expect("mount a tmpfs");
    let fake = FakeProvider::spawn().await;
    let env = TestEnv::with_config(&format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n{}",
        fake_provider(&fake)
    ));
    let db = disk.path().join("credwatch.db");
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace(
            "sqlite://state/credwatch.db",
            &format!("sqlite://{}", db.display()),
        ),
    )
    .unwrap();
    // Tokens that live 6 s: the connection is due every few seconds.
    fake.set_default(Reply::TokensFor(6));
    let id = env.add_connection("ada@example.com", TOKENS).await;
    let base = env.base_url();
    let mut daemon = env.spawn().await;
    let calls = || fake.token_calls();
    wait_until("a first check", Duration::from_secs(20), || async {
        calls() >= 1
    })
    .await;

    let filler = disk.fill();
    wait_until(
        "readiness to report the failing writes",
        Duration::from_secs(30),
        || async {
            let (status, body) = readyz(&base).await;
            status == 503 && body.contains("database writes failing")
        },
    )
    .await;
    // Several sweeps fail; the error is logged once for all of them.
    let seen = daemon
        .log_until("several failed claims", Duration::from_secs(30), |lines| {
            lines
                .iter()
                .filter(|l| l.contains("cannot claim due connections"))
                .count()
                >= 3
        })
        .await;
    let errors = seen
        .iter()
        .filter(|l| l.contains("database writes are failing"))
        .count();
    assert_eq!(errors, 1, "{}", seen.join("\n"));

    // Space comes back: the daemon works again by itself, with no restart.
    std::fs::remove_file(&filler).unwrap();
    let before = calls();
    wait_until("checks again", Duration::from_secs(30), || async {
        calls() > before
    })
    .await;
    wait_until("readiness again", Duration::from_secs(30), || async {
        readyz(&base).await.0 == 200
    })
    .await;
    daemon
        .log_until("the end of the episode", Duration::from_secs(10), |lines| {
            lines
                .iter()
                .any(|l| l.contains("database writes succeed again"))
        })
        .await;
    let report = env.check(&id).await;
    assert_eq!(report["after"], "healthy", "{report}");
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(20)).await.0, Some(0));
}

#[tokio::test]
async fn a_corrupted_token_row_is_set_aside_and_its_provider_goes_on() {
    let fake = FakeProvider::spawn().await;
    let env = TestEnv::with_config(&format!(
        "\n[operator]\nemail = \"ops@example.com\"\n{}",
        fake_provider(&fake)
    ));
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(env.add_connection("ada@example.com", TOKENS).await);
    }
    // One row altered behind our back: its sealed access token no longer authenticates.
    {
        use sqlx::Connection;
        let mut db =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", env.db_path().display()))
                .await
                .unwrap();
        sqlx::query(
            "UPDATE connections SET access_token = zeroblob(length(access_token)) WHERE id = ?",
        )
        .bind(&ids[1])
        .execute(&mut db)
        .await
        .unwrap();
        // All due now.
        sqlx::query("UPDATE connections SET next_check_at = 0")
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    let out = env.ok(&["sweep"]).await;
    assert!(out.starts_with("checked 3 "), "{out}");
    assert_eq!(fake.token_calls(), 3);
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    for c in status["connections"].as_array().unwrap() {
        if c["id"] == ids[1].as_str() {
            assert!(
                c["set_aside"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("authentication"),
                "{c}"
            );
            assert_eq!(c["last_check"], serde_json::Value::Null, "{c}");
        } else {
            assert_eq!(c["set_aside"], serde_json::Value::Null, "{c}");
            assert_ne!(c["last_check"], serde_json::Value::Null, "{c}");
        }
    }
    // The operator is told; the owner is not (nothing is wrong with the grant).
    assert_eq!(
        env.rows("SELECT kind, recipient FROM outbox").await,
        [["operator_alert", "ops@example.com"]]
    );
    assert!(
        env.value("SELECT detail FROM provider_alerts WHERE kind = 'unreadable_tokens'")
            .await
            .contains(&ids[1])
    );
    // Later sweeps go on without it.
    let out = env.ok(&["sweep"]).await;
    assert!(out.starts_with("checked 0 "), "nothing else due: {out}");
    // The platform asking for its token is told why, not given a 500.
    let _daemon = env.spawn().await;
    let (status, problem) = crate::api::Platform::new(&env)
        .call(
            "POST",
            &format!("/v1/connections/{}/access-token", ids[1]),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "/problems/credentials-unreadable");
}

#[tokio::test]
async fn idle_sockets_cannot_starve_the_listener_or_the_checks() {
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::TokensFor(6));
    let env = TestEnv::with_config(&format!(
        "\n[schedule]\nsweep = \"* * * * * *\"\n{}",
        fake_provider(&fake)
    ));
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("[http]\n", "[http]\nmax_connections = 48\n"),
    )
    .unwrap();
    let id = env.add_connection("ada@example.com", TOKENS).await;
    let base = env.base_url();
    // Fewer descriptors than the idle sockets about to be opened.
    let daemon = env.spawn_with_nofile(96).await;
    let addr = base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..120 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // The daemon still opens connections of its own: its checks go on.
    let before = fake.token_calls();
    wait_until(
        "a check with the sockets held",
        Duration::from_secs(30),
        || async { fake.token_calls() > before + 1 },
    )
    .await;
    assert_eq!(env.check(&id).await["after"], "healthy");
    // And the listener answers once the idle sockets' time is up.
    wait_until("/healthz to answer", Duration::from_secs(60), || async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    drop(idle);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
}
#[tokio::test]
async fn secrets_a_provider_quotes_back_are_kept_out_of_everything() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let fake = FakeProvider::spawn().await;
    let env = TestEnv::with_config(&format!(
        "\n[operator]\nemail = \"ops@example.com\"\n{}probe_url = \"{}\"\n",
        fake_provider(&fake),
        fake.probe_url()
    ));
    let id = env.add_connection("ada@example.com", TOKENS).await;
    // The refresh succeeds; the probe quotes the new access token back (raw and in Base64).
    let r = env.check(&id).await;
    assert_eq!(r["phase"], "probe", "{r}");
    // The token endpoint quotes our client's Basic credentials, encoded and decoded.
    fake.script([Reply::EchoClient]);
    let r = env.check(&id).await;
    assert_eq!(r["category"], "client_misconfigured", "{r}");

    let secrets = [
        "fake-at-1-0123456789".to_owned(),
        b64("fake-at-1-0123456789"),
        "credwatch-secret".to_owned(),
        b64("credwatch:credwatch-secret"),
    ];
    let mut seen = env
        .rows("SELECT COALESCE(error, '') FROM check_history")
        .await
        .concat();
    seen.extend(env.rows("SELECT payload FROM outbox").await.concat());
    seen.extend(
        env.rows("SELECT COALESCE(detail, '') FROM provider_alerts")
            .await
            .concat(),
    );
    seen.push(env.ok(&["connection", "show", &id]).await);
    assert!(
        seen.iter().any(|s| s.contains("[redacted]")),
        "the quotes were kept, redacted: {seen:?}"
    );
    for secret in &secrets {
        for text in &seen {
            assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
    }
}
