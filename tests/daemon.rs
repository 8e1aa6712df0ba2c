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
