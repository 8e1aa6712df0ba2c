//! Whether webhook deliveries keep up with the sweep that causes them: a sweep over N connections
//! (100,000 by default) of which a tenth are revoked at the provider, so that one event in ten
//! checks is `connection.broken`; then the daemon delivers those events to a local receiver;
//! then the event feed is read from the start. On SQLite, through the real code paths.
//!
//!     cargo bench --bench events -- [--connections N]
//!
//! Prints the sweep's rate and CPU, the events it wrote per second, the deliveries per second
//! and their CPU beside the sweep's, and the feed's read rate.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credwatch::store::{self, NewConnection};
use credwatch::tokens::TokenSet;

mod common;

use common::{children_usage, free_port, machine, process_cpu};

const BIN: &str = env!("CARGO_BIN_EXE_credwatch");
const KEY: &str = "cwk_benchmark-key-0123456789abcdefghijklmnopqrstu";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3bFXv0QHKSc=";

fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("peer") {
        let port = std::env::args()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .expect("port");
        return peer(port);
    }
    let mut connections = 100_000;
    while let Some(a) = args.next() {
        if a == "--connections" {
            connections = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--connections N");
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench(connections));
}

/// The provider and the receiver, in a process of their own: refreshes answer new tokens,
/// but `invalid_grant` for refresh tokens marked revoked; deliveries are counted.
fn peer(port: u16) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let delivered = Arc::new(AtomicU64::new(0));
        let counted = delivered.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                axum::routing::post(|body: String| async move {
                    if body.contains("revoked") {
                        (
                            axum::http::StatusCode::BAD_REQUEST,
                            r#"{"error":"invalid_grant"}"#.to_owned(),
                        )
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            r#"{"access_token":"bench-at-0123456789abcdef","refresh_token":"bench-rt-0123456789abcdef","expires_in":3600}"#.to_owned(),
                        )
                    }
                }),
            )
            .route(
                "/hook",
                axum::routing::post(move || {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    async { axum::http::StatusCode::NO_CONTENT }
                }),
            )
            .route(
                "/count",
                axum::routing::get(move || {
                    let n = counted.load(Ordering::Relaxed);
                    async move { n.to_string() }
                }),
            );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        println!("ready");
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn bench(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut peer = common::Child(
        std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["peer", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer"),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(peer.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("peer ready");
    }
    let api_port = free_port();
    let hash: String = credwatch::config::api_key_sha256(KEY)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = dir.path().join("credwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://state/credwatch.db\"\n\n\
             [encryption]\nkey_file = \"credwatch.key\"\ncreate_if_missing = true\n\n\
             [schedule]\nbatch_size = 2000\n\n\
             [limits]\nmax_concurrent_checks = 64\nrequest_timeout = \"10s\"\n\n\
             [mail]\ntransport = \"file\"\ndir = \"mail\"\n\n\
             [notices]\ndigest_window = \"1d\"\n\n\
             [log]\nlevel = \"warn\"\n\n\
             [http]\nlisten = \"127.0.0.1:{}\"\n\n\
             [api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[[api.keys]]\nname = \"bench\"\nsha256 = \"{hash}\"\n\n\
             [[webhooks]]\nname = \"bench\"\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"{SECRET}\"\nevents = [\"connection.broken\", \"connection.recovered\", \"pipeline.paused\", \"pipeline.resumed\"]\n\n\
             [providers.bench]\ntoken_url = \"http://127.0.0.1:{port}/token\"\n\
             authorize_url = \"http://127.0.0.1:9/a\"\nclient_id = \"bench\"\nclient_secret = \"s\"\n\
             max_concurrent = 64\nrequests_per_second = 100000\n",
            free_port()
        ),
    )
    .expect("config");
    let loaded = credwatch::config::Config::load(&config).expect("config loads");

    // The schema first: the daemon and this process must not both create it.
    let store = store::open(&loaded.database, loaded.keyring.clone())
        .await
        .expect("store");
    // The endpoint is known before anything happens, so it gets the sweep's events (and the
    // daemon, started on an empty database, moves no due connection for its catch-up).
    let mut daemon = common::Child(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let http = reqwest::Client::new();
    let events_url = format!("http://127.0.0.1:{api_port}/v1/events");
    let until = Instant::now() + Duration::from_secs(30);
    while store.endpoint_status().await.expect("endpoints").is_empty() {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            panic!(
                "the daemon exited ({status}); run it with the config in {}",
                dir.path().display()
            );
        }
        assert!(
            Instant::now() < until,
            "the daemon never registered its endpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop();
    seed(&loaded, n).await;

    let started = Instant::now();
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("sweep")
        .output()
        .expect("run credwatch sweep");
    let sweep_wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, sweep_cpu) = children_usage();
    let written = store
        .events_after(0, &["connection.broken".to_owned()], 10_000_000)
        .await
        .expect("events")
        .len();

    let started = Instant::now();
    let mut daemon = common::Child(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let count_url = format!("http://127.0.0.1:{port}/count");
    let mut delivered = 0;
    while delivered < written as u64 && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        delivered = http
            .get(&count_url)
            .send()
            .await
            .expect("count")
            .text()
            .await
            .expect("count")
            .parse()
            .expect("a number");
    }
    let deliver_wall = started.elapsed();
    let deliver_cpu = process_cpu(daemon.0.id());

    let started = Instant::now();
    let (mut read, mut after) = (0usize, String::new());
    loop {
        let page: serde_json::Value = http
            .get(format!("{events_url}?limit=500&after={after}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("feed")
            .json()
            .await
            .expect("page");
        let got = page["events"].as_array().map_or(0, Vec::len);
        if got == 0 {
            break;
        }
        read += got;
        after = page["next"].as_str().unwrap_or_default().to_owned();
    }
    let feed_wall = started.elapsed();
    daemon.stop();
    drop(peer);

    let sweep_secs = sweep_wall.as_secs_f64();
    println!("credwatch events benchmark (sqlite)");
    println!("  machine          {}", machine());
    println!(
        "  sweep            {n} checks in {sweep_secs:.1} s ({:.0}/s), {sweep_cpu:.1} s CPU; {written} connection.broken events ({:.0}/s)",
        n as f64 / sweep_secs,
        written as f64 / sweep_secs
    );
    println!(
        "  deliveries       {delivered} in {:.1} s ({:.0}/s), {deliver_cpu:.2} s CPU ({:.0} µs each, {:.2} of the sweep's CPU)",
        deliver_wall.as_secs_f64(),
        delivered as f64 / deliver_wall.as_secs_f64(),
        deliver_cpu * 1e6 / delivered.max(1) as f64,
        deliver_cpu / sweep_cpu
    );
    println!(
        "  feed             {read} events read in {:.2} s ({:.0}/s, pages of 500)",
        feed_wall.as_secs_f64(),
        read as f64 / feed_wall.as_secs_f64()
    );
}

/// N due connections, one in ten with a refresh token the provider has revoked.
async fn seed(config: &credwatch::config::Config, n: usize) {
    let store = store::open(&config.database, config.keyring.clone())
        .await
        .expect("open store");
    let past = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let batch = chunk
            .iter()
            .map(|i| {
                let state = if i % 10 == 0 { "revoked" } else { "live" };
                NewConnection {
                    provider: "bench".parse().expect("provider"),
                    name: format!("source {i}"),
                    owner: format!("owner-{i}@example.com").parse().expect("owner"),
                    account: Some(format!("account-{i}")),
                    tokens: TokenSet::from_json(
                        format!(r#"{{"access_token":"at-{i}-0123456789abcdef","refresh_token":"rt-{state}-{i}-0123456789","expires_in":3600}}"#).as_bytes(),
                        past,
                    )
                    .expect("tokens"),
                    external_id: None,
                    metadata: None,
                    credential_kind: "oauth",
                }
            })
            .collect();
        store.add_connections(batch, past).await.expect("seed");
    }
}
