//! Running under systemd: the notify protocol, reloading on SIGHUP, stopping on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::helpers::fake::{FakeProvider, Reply};
use crate::helpers::{TestEnv, wait_until};

const TOKENS: &str =
    r#"{"access_token":"at-0123456789","refresh_token":"rt-0123456789","expires_in":3600}"#;

fn provider(id: &str, token_url: &str) -> String {
    format!(
        "\n[providers.{id}]\ntoken_url = \"{token_url}\"\nauthorize_url = \"http://127.0.0.1:9/a\"\n\
         client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\n"
    )
}

/// The datagrams received so far, without waiting.
fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[tokio::test]
async fn the_daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let env = TestEnv::new();
    let path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let daemon = env
        .spawn_with_env(
            &env.config,
            &[
                ("NOTIFY_SOCKET", path.to_str().unwrap()),
                ("WATCHDOG_USEC", "400000"),
            ],
        )
        .await;
    let mut seen = Vec::new();
    wait_until(
        "READY=1 with its status, and two watchdog pings",
        Duration::from_secs(20),
        || {
            seen.extend(received(&socket));
            // One message: systemd never shows the service active without its status.
            let ready = seen
                .iter()
                .any(|m| m.starts_with("READY=1\nSTATUS=0 connections"));
            let pings = seen.iter().filter(|m| *m == "WATCHDOG=1").count();
            std::future::ready(ready && pings >= 2)
        },
    )
    .await;
    daemon.signal(libc::SIGTERM);
    let (code, _) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
    let rest = received(&socket);
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

/// A schema upgrade that takes longer than systemd waits for a start (here: the migrations'
/// table locked by someone else) is not killed for it: the daemon asks systemd to wait on,
/// says why, and is ready once the database is open.
#[tokio::test]
async fn a_slow_database_upgrade_asks_systemd_to_wait_instead_of_being_killed() {
    use sqlx::Connection;
    let env = TestEnv::with_config_on(crate::helpers::Db::Postgres, "").await;
    env.ok(&["migrate"]).await;
    let url = env.postgres.clone().unwrap();
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let path = env.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut seen = Vec::new();
    let notify = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    let starting = env.spawn_with_env(&env.config, &notify);
    let held = async {
        wait_until(
            "a longer wait asked of systemd",
            Duration::from_secs(30),
            || {
                seen.extend(received(&socket));
                std::future::ready(seen.iter().any(|m| m.starts_with("EXTEND_TIMEOUT_USEC=")))
            },
        )
        .await;
        assert!(!seen.iter().any(|m| m.starts_with("READY=1")), "{seen:?}");
        assert!(
            seen.iter()
                .any(|m| m.starts_with("STATUS=opening the database")),
            "{seen:?}"
        );
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    };
    let (daemon, ()) = tokio::join!(starting, held);
    wait_until("READY=1", Duration::from_secs(20), || {
        seen.extend(received(&socket));
        std::future::ready(seen.iter().any(|m| m.starts_with("READY=1\nSTATUS=")))
    })
    .await;
    daemon.signal(libc::SIGTERM);
    let (code, _) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sighup_applies_a_changed_config_and_keeps_the_old_one_when_the_new_is_broken() {
    let acme = FakeProvider::spawn().await;
    let beta = FakeProvider::spawn().await;
    let base = "[schedule]\nsweep = \"* * * * * *\"\n";
    let env = TestEnv::with_config(&format!("{base}{}", provider("acme", &acme.token_url())));
    let with_beta = format!(
        "{}{}",
        std::fs::read_to_string(&env.config).unwrap(),
        provider("beta", &beta.token_url())
    );
    // The connection is added with the new config; the daemon runs with the old one.
    let next = env.path("next.toml");
    std::fs::write(&next, &with_beta).unwrap();
    let mut add = tokio::process::Command::new(crate::helpers::BIN)
        .arg("--config")
        .arg(&next)
        .args(["connection", "add", "--provider", "beta", "--name", "Beta"])
        .args([
            "--owner",
            "ada@example.com",
            "--tokens",
            "-",
            "--allow-unknown-account",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(TOKENS.as_bytes()).await.unwrap();
    }
    let out = add.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = env.spawn().await;
    daemon
        .log_until("two sweeps", Duration::from_secs(20), |log| {
            log.iter().filter(|l| l.contains("sweep finished")).count() >= 2
        })
        .await;
    assert_eq!(beta.token_calls(), 0, "beta is not in the running config");

    std::fs::write(&env.config, &with_beta).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon
        .log_until("the reload", Duration::from_secs(20), |log| {
            log.iter().any(|l| l.contains("config reloaded"))
        })
        .await;
    wait_until(
        "beta's connection checked",
        Duration::from_secs(20),
        || async { beta.token_calls() == 1 },
    )
    .await;

    // A broken config is refused; the daemon goes on with the one it has.
    let typo = with_beta.replace("sweep = \"* * * * * *\"", "sweep = \"now and then\"");
    std::fs::write(&env.config, typo).unwrap();
    daemon.signal(libc::SIGHUP);
    let log = daemon
        .log_until("the refusal", Duration::from_secs(20), |log| {
            log.iter().any(|l| l.contains("the new config is refused"))
        })
        .await;
    let refused = log
        .iter()
        .find(|l| l.contains("the new config is refused"))
        .unwrap();
    assert!(refused.contains("schedule.sweep"), "{refused}");
    let before = log.iter().filter(|l| l.contains("sweep finished")).count();
    daemon
        .log_until("sweeps after the refusal", Duration::from_secs(20), |log| {
            log.iter().filter(|l| l.contains("sweep finished")).count() >= before + 2
        })
        .await;
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait(Duration::from_secs(30)).await.0, Some(0));
}

#[tokio::test]
async fn sigterm_in_the_middle_of_a_sweep_exits_0_and_leaves_nothing_leased() {
    let fake = FakeProvider::spawn().await;
    fake.set_default(Reply::Slow(Duration::from_secs(2)));
    let env = TestEnv::with_config(&format!(
        "[schedule]\nsweep = \"* * * * * *\"\n\n[limits]\nrequest_timeout = \"5s\"\n{}",
        provider("acme", &fake.token_url()).replace(
            "client_secret = \"credwatch-secret\"\n",
            "client_secret = \"credwatch-secret\"\nmax_concurrent = 2\n"
        )
    ));
    for _ in 0..10 {
        env.add_connection("ada@example.com", TOKENS).await;
    }
    let daemon = env.spawn().await;
    wait_until("checks in flight", Duration::from_secs(20), || async {
        fake.token_calls() >= 1
            && env
                .value("SELECT COUNT(*) FROM connections WHERE lease_owner IS NOT NULL")
                .await
                != "0"
    })
    .await;
    daemon.signal(libc::SIGTERM);
    let (code, log) = daemon.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{}", log.join("\n"));
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE lease_owner IS NOT NULL")
            .await,
        "0",
        "checks in flight finished, the others were given back"
    );
    assert_eq!(
        env.value("SELECT COUNT(*) FROM connections WHERE refresh_sent_at IS NOT NULL")
            .await,
        "0",
        "no claim's mark left dangling"
    );
    let checked: u64 = env
        .value("SELECT COUNT(*) FROM connections WHERE last_check_at IS NOT NULL")
        .await
        .parse()
        .unwrap();
    assert!(
        (1..10).contains(&checked),
        "some finished, the rest were given back: {checked}"
    );
}

/// Whether `addr` falls in one of the unit's `IPAddressAllow=` networks.
fn unit_allows(unit: &str, addr: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    unit.lines()
        .filter_map(|l| l.strip_prefix("IPAddressAllow="))
        .flat_map(str::split_whitespace)
        .any(|cidr| {
            let (net, bits) = cidr.split_once('/').expect("a CIDR");
            let bits: u32 = bits.parse().expect("prefix length");
            match (net.parse::<IpAddr>().expect("an address"), addr) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => {
                    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            }
        })
}

#[test]
fn the_unit_reaches_the_internet_but_no_metadata_endpoint() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/credwatch.service"
    ))
    .unwrap();
    for open in [
        "8.8.8.8",
        "100.100.100.199",
        "100.100.100.201",
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.5",
        "192.168.1.1",
        "203.0.113.7",
        "::1",
        "2001:db8::1",
        "fd00:ec3::1",
        "fd12:3456::1",
    ] {
        assert!(
            unit_allows(&unit, open.parse().unwrap()),
            "{open} is blocked"
        );
    }
    for metadata in [
        "169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "fe80::1",
        "224.0.0.1",
        "ff02::1",
    ] {
        assert!(
            !unit_allows(&unit, metadata.parse().unwrap()),
            "{metadata} is reachable"
        );
    }
    let nofile = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE");
    assert!(nofile.parse::<u64>().unwrap() >= 8192, "{nofile}");
}
