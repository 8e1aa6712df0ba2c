//! `credwatch run`: starts on the embedded defaults and stops cleanly on a signal.

use std::time::Duration;

use crate::helpers::TestEnv;

#[tokio::test]
async fn the_daemon_starts_and_exits_cleanly_on_sigterm_and_sigint() {
    let env = TestEnv::new();
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let daemon = env.spawn().await;
        daemon.signal(signal);
        let (code, log) = daemon.wait(Duration::from_secs(30)).await;
        assert_eq!(
            code,
            Some(0),
            "exit code after signal {signal}; log:\n{}",
            log.join("\n")
        );
        assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
        // Its writers finished and the write-ahead log was folded into the database file,
        // which is whole on its own (a copy of it is a backup): the log is gone, or empty.
        let wal = env.db_path().with_extension("db-wal");
        let left = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert_eq!(left, 0, "{} left behind with {left} bytes", wal.display());
    }
    assert!(
        env.db_path().exists(),
        "the daemon created its SQLite database"
    );
}

#[tokio::test]
async fn the_daemon_refuses_a_bad_config_with_exit_78() {
    let env = TestEnv::new();
    std::fs::write(&env.config, "[schedule]\nsweep = \"sometimes\"\n").unwrap();
    let out = env.cli(&["run"]).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("schedule.sweep"));
}

#[tokio::test]
async fn json_logs_when_configured() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("[log]\n", "[log]\nformat = \"json\"\n");
    std::fs::write(&env.config, text).unwrap();
    let daemon = env.spawn().await;
    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let started = log
        .iter()
        .find(|l| l.contains("credwatch started"))
        .expect("start line");
    let v: serde_json::Value = serde_json::from_str(started).expect("a JSON log line");
    assert_eq!(v["fields"]["message"], "credwatch started");
    assert_eq!(v["level"], "INFO");
}

#[tokio::test]
async fn connections_overdue_at_start_are_spread_over_the_catch_up_window() {
    let fake = crate::helpers::fake::FakeProvider::spawn().await;
    let env = TestEnv::with_config(&format!(
        "[schedule]\nsweep = \"0 0 0 1 1 *\"\nbatch_size = 5\ncatch_up = \"10m\"\n\n\
         [providers.acme]\ntoken_url = \"{}\"\nauthorize_url = \"http://127.0.0.1:9/authorize\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n",
        fake.token_url()
    ));
    for _ in 0..20 {
        env.add_connection(
            "ada@example.com",
            r#"{"access_token":"at-0123456789","refresh_token":"rt-0123456789"}"#,
        )
        .await;
    }
    let mut daemon = env.spawn().await;
    daemon
        .log_until("the catch-up", Duration::from_secs(20), |log| {
            log.iter()
                .any(|l| l.contains("spread over the catch-up window"))
        })
        .await;
    daemon
        .log_until("the first sweep", Duration::from_secs(20), |log| {
            log.iter().any(|l| l.contains("sweep finished"))
        })
        .await;
    daemon.signal(libc::SIGTERM);
    let (code, _) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let times: Vec<i64> = env
        .rows("SELECT next_check_at FROM connections WHERE last_check_at IS NULL")
        .await
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert!(times.len() >= 10, "most wait their turn: {}", times.len());
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(
        span > 120_000,
        "spread over minutes, not seconds: {span} ms"
    );
    assert!(
        fake.token_calls() < 20,
        "not all checked in the same second"
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    use crate::helpers::fake::{FakeProvider, Reply};
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Json(503, "{}"));
    let env = TestEnv::with_config(&format!(
        "[schedule]\nsweep = \"* * * * * *\"\n\n[providers.acme]\ntoken_url = \"{}\"\n\
         authorize_url = \"http://127.0.0.1:9/authorize\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
        fake.token_url()
    ));
    env.add_connection(
        "ada@example.com",
        r#"{"access_token":"at-0123456789","refresh_token":"rt-0123456789"}"#,
    )
    .await;
    let mut daemon = env.spawn().await;
    daemon
        .log_until("a sweep with a check", Duration::from_secs(30), |log| {
            log.iter()
                .any(|l| l.contains("sweep finished") && l.contains("checked=1"))
        })
        .await;
    let base = env.base_url();
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get("/readyz").await.0, 200);
    // Metrics answer on the API's private listener, not on the public one.
    assert_eq!(get("/metrics").await.0, 404);
    let response = reqwest::get(format!("{}/metrics", env.api_url()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let metrics = response.text().await.unwrap();
    for line in [
        r#"credwatch_connections{provider="acme",status="degraded",reason="transient"} 1"#,
        r#"credwatch_checks_total{provider="acme",category="transient"} 1"#,
        r#"credwatch_check_duration_seconds_count{provider="acme"} 1"#,
        "credwatch_outbox_pending 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("credwatch_sweep_duration_seconds_count"),
        "{metrics}"
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
}

#[tokio::test]
async fn a_second_daemon_on_the_same_sqlite_file_is_refused() {
    let env = TestEnv::new();
    let first = env.spawn().await;
    // Its own HTTP port, so that the database is what stops it.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let port = crate::helpers::peers::free_port();
    let other = env.path("other.toml");
    let listen = text
        .lines()
        .find(|l| l.starts_with("listen"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &other,
        text.replace(&listen, &format!("listen = \"127.0.0.1:{port}\"")),
    )
    .unwrap();
    let out = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(&other)
        .arg("run")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another credwatch daemon is already running"),
        "{stderr}"
    );
    first.signal(libc::SIGTERM);
    let (code, _) = first.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    // Once it is gone, a daemon starts again on the same file.
    let again = env.spawn().await;
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait(Duration::from_secs(30)).await.0, Some(0));
}
