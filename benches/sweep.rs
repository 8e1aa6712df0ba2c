//! How many connections one small server keeps healthy: one full sweep through the real code
//! path (claim → refresh over HTTP → classify → persist encrypted tokens → history) against a
//! fast local token endpoint in its own process.
//!
//!     cargo bench --bench sweep -- [--connections N] [--postgres URL] [--concurrency C]
//!                                  [--replicas R] [--steady] [--no-peer]
//!
//! Prints the connections, wall time, checks per second, p50/p99 check latency, the sweeping
//! process's peak RSS and the database size, beside the ceiling: the same endpoint's raw
//! request rate with no credwatch around it (from `wrk` when installed, else a client loop).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credwatch::config::{DatabaseConfig, DatabaseUrl};
use credwatch::crypto::Keyring;
use credwatch::store::{self, NewConnection};
use credwatch::tokens::TokenSet;

mod common;

use common::{children_usage_io, free_port, machine};

const BIN: &str = env!("CARGO_BIN_EXE_credwatch");
const SEED_BATCH: usize = 5_000;

struct Options {
    connections: usize,
    postgres: Option<String>,
    concurrency: usize,
    /// `credwatch sweep` processes sharing the database (the replicas of a PostgreSQL setup).
    replicas: usize,
    /// Measure a second sweep, whose connections come due in the order the first left them
    /// (a running daemon's order), rather than the first, which claims them in the order
    /// they were stored.
    steady: bool,
    /// Leave the Python peer out (a quicker A/B of two builds of credwatch).
    no_peer: bool,
}

fn options() -> Options {
    let mut o = Options {
        connections: 100_000,
        postgres: None,
        concurrency: 64,
        replicas: 1,
        steady: false,
        no_peer: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connections" => {
                o.connections = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--connections N")
            }
            "--postgres" => o.postgres = Some(args.next().expect("--postgres URL")),
            "--concurrency" => {
                o.concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency C")
            }
            "--replicas" => {
                o.replicas = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&r| r > 0)
                    .expect("--replicas R")
            }
            "--steady" => o.steady = true,
            "--no-peer" => o.no_peer = true,
            // cargo bench passes --bench; nothing else is ours.
            _ => {}
        }
    }
    o
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("token-server") {
        let port: u16 = std::env::args()
            .nth(2)
            .and_then(|p| p.parse().ok())
            .expect("port");
        return token_server(port);
    }
    let o = options();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench(o));
}

/// The endpoint: answers every refresh with new tokens, as a rotating provider does.
fn token_server(port: u16) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let issued = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move || {
                let n = issued.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        format!(
                            r#"{{"access_token":"bench-at-{n}-0123456789abcdef","refresh_token":"bench-rt-{n}-0123456789abcdef","expires_in":3600,"token_type":"Bearer"}}"#
                        ),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("ready");
        axum::serve(listener, app).await.expect("serve");
    });
}

async fn bench(o: Options) {
    let dir = tempfile::tempdir().expect("temp dir");
    // CREDWATCH_BENCH_KEEP=1 leaves the databases behind for a look (sqlite3_analyzer, dbstat).
    let dir = if std::env::var_os("CREDWATCH_BENCH_KEEP").is_some() {
        let kept = dir.keep();
        println!("working directory kept: {}", kept.display());
        Kept::Path(kept)
    } else {
        Kept::Temp(dir)
    };
    let port = free_port();
    let mut server = Server(
        std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["token-server", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the token server"),
    );
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("token server ready");
    }
    let token_url = format!("http://127.0.0.1:{port}/token");

    let backend = if o.postgres.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let database_url = o
        .postgres
        .clone()
        .unwrap_or_else(|| "sqlite://state/credwatch.db".to_owned());
    let config = dir.path().join("credwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{database_url}\"\nmax_connections = 8\n\n\
             [encryption]\nkey_file = \"credwatch.key\"\ncreate_if_missing = true\n\n\
             [schedule]\nbatch_size = 2000\n\n\
             [limits]\nmax_concurrent_checks = {c}\nrequest_timeout = \"10s\"\n\n\
             [mail]\ntransport = \"file\"\ndir = \"mail\"\n\n\
             [providers.bench]\ntoken_url = \"{token_url}\"\nauthorize_url = \"http://127.0.0.1:9/a\"\n\
             client_id = \"bench\"\nclient_secret = \"bench-secret\"\nrotates_refresh_tokens = true\n\
             max_concurrent = {c}\nrequests_per_second = 100000\n",
            c = o.concurrency
        ),
    )
    .expect("config");
    let loaded = credwatch::config::Config::load(&config).expect("config loads");

    // Seeding is not measured: every connection is due, its access token already expired.
    let seed_started = Instant::now();
    seed(&loaded.database, loaded.keyring.clone(), o.connections).await;
    let seeded_in = seed_started.elapsed();
    let first_measured = match o.steady {
        true => {
            let first = std::process::Command::new(BIN)
                .arg("--config")
                .arg(&config)
                .arg("sweep")
                .output()
                .expect("run credwatch sweep");
            assert!(first.status.success(), "the first sweep failed");
            due_again(&loaded.database).await
        }
        false => 0,
    };
    let (_, cpu_before, written_before) = children_usage_io();

    let callgrind = std::env::var_os("CREDWATCH_BENCH_CALLGRIND").map(PathBuf::from);
    let started = Instant::now();
    let sweeps: Vec<std::process::Child> = (0..o.replicas)
        .map(|_| {
            // CREDWATCH_BENCH_PERF=FILE records the sweep with `perf record` (where to look next);
            // CREDWATCH_BENCH_CALLGRIND=FILE runs it under callgrind, which counts the
            // instructions it executes: the same from run to run, where CPU time is not.
            let perf = std::env::var_os("CREDWATCH_BENCH_PERF");
            let mut sweep = match (perf, callgrind.as_ref()) {
                (Some(file), _) if o.replicas == 1 => {
                    let mut c = std::process::Command::new("perf");
                    c.args(["record", "-F", "499", "-g", "-o"])
                        .arg(file)
                        .arg("--")
                        .arg(BIN);
                    c
                }
                (_, Some(file)) if o.replicas == 1 => {
                    let mut c = std::process::Command::new("valgrind");
                    c.arg("--tool=callgrind")
                        .arg(format!("--callgrind-out-file={}", file.display()))
                        .arg(BIN);
                    c
                }
                _ => std::process::Command::new(BIN),
            };
            sweep
                .arg("--config")
                .arg(&config)
                .arg("sweep")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run credwatch sweep")
        })
        .collect();
    let outs: Vec<std::process::Output> = sweeps
        .into_iter()
        .map(|s| s.wait_with_output().expect("credwatch sweep"))
        .collect();
    let wall = started.elapsed();
    for out in &outs {
        assert!(
            out.status.success(),
            "sweep failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (peak_rss_kib, cpu_secs, written) = children_usage_io();
    let (cpu_secs, written) = (cpu_secs - cpu_before, written - written_before);

    // After the sweep's usage is read: wrk is a child too.
    let period = Duration::from_secs(3);
    let (ceiling, measured_by) = match wrk_rate(&token_url, o.concurrency, period, dir.path()) {
        Some(rate) => (rate, "wrk"),
        None => (
            raw_rate(&token_url, o.concurrency, period).await,
            "a client loop",
        ),
    };

    let (calls, stored, db_bytes) = results(
        &loaded.database,
        loaded.keyring.clone(),
        dir.path(),
        first_measured,
    )
    .await;
    // The yardstick, in the same run against the same endpoint: SQLite only.
    let peer = match &o.postgres {
        None if !o.no_peer => Some(peer(
            &token_url,
            o.connections,
            o.concurrency,
            o.steady,
            dir.path(),
        )),
        _ => None,
    };
    let checks = calls.len();
    let rate = checks as f64 / wall.as_secs_f64();
    let pct = |sorted: &[u64], p: f64| {
        sorted
            .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    drop(server);

    println!("credwatch sweep benchmark ({backend})");
    println!("  machine          {}", machine());
    println!(
        "  connections      {} (seeded in {:.1} s){}",
        o.connections,
        seeded_in.as_secs_f64(),
        match o.steady {
            true => "; the second sweep measured",
            false => "",
        }
    );
    if o.replicas > 1 {
        println!("  replicas         {} sweeping at once", o.replicas);
    }
    for out in &outs {
        let said = String::from_utf8_lossy(&out.stdout);
        for line in said.lines() {
            match line.strip_prefix("CPU per check by thread: ") {
                Some(split) => println!("  CPU by thread    {split} (per check)"),
                None => println!("  sweep            {}", line.trim()),
            }
        }
    }
    println!("  wall time        {:.2} s", wall.as_secs_f64());
    println!("  checks/s         {rate:.0}");
    println!(
        "  latency          provider call p50 {} ms, p99 {} ms; claimed to stored p50 {} ms, p99 {} ms",
        pct(&calls, 0.50),
        pct(&calls, 0.99),
        pct(&stored, 0.50),
        pct(&stored, 0.99)
    );
    println!("  peak RSS         {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    println!(
        "  CPU              {cpu_secs:.2} s ({:.0} µs per check)",
        cpu_secs * 1e6 / checks.max(1) as f64
    );
    if let Some((file, total)) = callgrind
        .as_deref()
        .and_then(|f| Some((f, instructions(f)?)))
    {
        let per_check = |n: u64| n as f64 / checks.max(1) as f64;
        println!(
            "  instructions     {:.0} per check (callgrind, the sweep's own, not the kernel's)",
            per_check(total)
        );
        match stages(file) {
            Some(found) => {
                let named: u64 = found.iter().map(|(_, n)| n).sum();
                let mut line: Vec<String> = found
                    .iter()
                    .map(|(stage, n)| format!("{stage} {:.0}", per_check(*n)))
                    .collect();
                line.push(format!(
                    "other {:.0}",
                    per_check(total.saturating_sub(named))
                ));
                println!(
                    "  by stage         {} (instructions a check)",
                    line.join(", ")
                );
            }
            None => println!("  by stage         not counted: callgrind_annotate did not run"),
        }
    }
    println!(
        "  database         {:.1} MiB",
        db_bytes as f64 / (1024.0 * 1024.0)
    );
    // PostgreSQL's writes are its server's, not the sweep's.
    if o.postgres.is_none() {
        println!(
            "  written to disk  {:.1} MiB ({:.1} KiB per check)",
            written as f64 / (1024.0 * 1024.0),
            written as f64 / 1024.0 / checks.max(1) as f64
        );
    }
    println!(
        "  raw ceiling      {ceiling:.0} req/s ({measured_by}, {} concurrent, no credwatch)",
        o.concurrency
    );
    println!("  ratio            {:.2} of the ceiling", rate / ceiling);
    match peer {
        Some(Ok(p)) => {
            let peer_rate = p.checks as f64 / p.seconds;
            println!(
                "  python peer      {} checks in {:.2} s: {peer_rate:.0} checks/s, {:.0} µs CPU per check, database {:.1} MiB, {:.1} KiB written per check",
                p.checks,
                p.seconds,
                p.cpu_seconds * 1e6 / p.checks.max(1) as f64,
                p.database_bytes as f64 / (1024.0 * 1024.0),
                p.written_bytes as f64 / 1024.0 / p.checks.max(1) as f64
            );
            println!("  vs the peer      {:.2}× its checks/s", rate / peer_rate);
        }
        Some(Err(why)) => println!("  python peer      not run: {why}"),
        None => {}
    }
}

/// The instructions a callgrind output file counted (its `summary:` line).
fn instructions(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))?
        .trim()
        .parse()
        .ok()
}

/// A check's stages, each by the functions it runs in: a function's inclusive count is what it
/// and everything it calls executed. The HTTP client's half of a request runs in the check's
/// task, its connection's half (writing the request, parsing the answer) in a task of its
/// own; sealing happens on the runtime before the write is queued, opening as a claim's rows
/// are read; the database is SQLite's writer thread (claims, rotations, results, commits).
/// What no stage names is "other": reading a claim's rows, pacing, the check's bookkeeping.
const STAGES: &[(&str, &[&str])] = &[
    (
        "HTTP",
        &[
            "credwatch::check::http::HttpClient::send::{{closure}}",
            "<hyper::client::conn::http1::upgrades::UpgradeableConnection<I,B> as core::future::future::Future>::poll",
        ],
    ),
    (
        "crypto",
        &[
            "credwatch::crypto::Keyring::seal_pair",
            "credwatch::crypto::Keyring::open_pair",
        ],
    ),
    ("classification", &["credwatch::classify::classify"]),
    (
        "database (SQLite's writer)",
        &["credwatch::store::sql::native::Writer::commit"],
    ),
];

/// Each stage's instructions in a callgrind output file, by `callgrind_annotate`'s inclusive
/// counts; a stage none of whose functions ran (PostgreSQL has no SQLite writer) is left out.
fn stages(file: &Path) -> Option<Vec<(&'static str, u64)>> {
    let out = std::process::Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(file)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "  250,626,799 (42.29%)  ???:credwatch::…::commit [/path/to/credwatch]"
    let counted: Vec<(u64, &str)> = text
        .lines()
        .filter_map(|l| {
            let (count, rest) = l.trim_start().split_once(' ')?;
            let count: u64 = count.replace(',', "").parse().ok()?;
            let (_, function) = rest.split_once(':')?;
            let function = function.rsplit_once(" [").map_or(function, |(f, _)| f);
            Some((count, function.trim()))
        })
        .collect();
    Some(
        STAGES
            .iter()
            .filter_map(|(stage, functions)| {
                let n: u64 = counted
                    .iter()
                    .filter(|(_, f)| functions.contains(f))
                    .map(|(n, _)| n)
                    .sum();
                (n > 0).then_some((*stage, n))
            })
            .collect(),
    )
}

/// What `benches/peer.py` printed.
#[derive(serde::Deserialize)]
struct PeerRun {
    checks: u64,
    seconds: f64,
    cpu_seconds: f64,
    written_bytes: u64,
    database_bytes: u64,
}

/// The Python script's sweep of as many connections of its own at the same endpoint.
fn peer(
    url: &str,
    connections: usize,
    concurrency: usize,
    steady: bool,
    dir: &Path,
) -> Result<PeerRun, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.join("peer.db"))
        .arg(url)
        .arg(connections.to_string())
        .arg(concurrency.to_string())
        .arg(if steady { "steady" } else { "first" })
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output");
        return Err(format!(
            "{last} (it needs: pip install aiohttp uvloop cryptography)"
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("its output: {e}"))
}

/// The benchmark's working directory: removed at the end unless asked to keep it.
enum Kept {
    Temp(tempfile::TempDir),
    Path(PathBuf),
}

impl Kept {
    fn path(&self) -> &Path {
        match self {
            Kept::Temp(t) => t.path(),
            Kept::Path(p) => p,
        }
    }
}

/// The token server's process, stopped however the benchmark ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn seed(db: &DatabaseConfig, keyring: Arc<Keyring>, n: usize) {
    let store = store::open(db, keyring).await.expect("open store");
    let past = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let mut done = 0;
    while done < n {
        let batch: Vec<NewConnection> = (done..(done + SEED_BATCH).min(n))
            .map(|i| NewConnection {
                provider: "bench".parse().expect("provider id"),
                name: format!("source {i}"),
                owner: format!("owner-{}@example.com", i % 1000).parse().expect("address"),
                account: Some(format!("account-{i}")),
                tokens: TokenSet::from_json(
                    format!(r#"{{"access_token":"seed-at-{i}-0123456789abcdef","refresh_token":"seed-rt-{i}-0123456789abcdef","expires_in":3600}}"#)
                        .as_bytes(),
                    past,
                )
                .expect("tokens"),
                external_id: None,
                metadata: None,
                credential_kind: "oauth",
            })
            .collect();
        done += batch.len();
        store.add_connections(batch, past).await.expect("seed");
    }
}

/// The endpoint's own rate measured by `wrk`, when it is installed: the same refresh-shaped
/// form, `concurrency` connections, 2 threads. `None` when there is no wrk or it failed.
fn wrk_rate(url: &str, concurrency: usize, period: Duration, dir: &Path) -> Option<f64> {
    let script = dir.join("refresh.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\n\
         wrk.body = \"grant_type=refresh_token&refresh_token=rt\"\n\
         wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
         wrk.headers[\"Authorization\"] = \"Basic YmVuY2g6YmVuY2gtc2VjcmV0\"\n",
    )
    .ok()?;
    let out = std::process::Command::new("wrk")
        .arg("-t2")
        .arg(format!("-c{concurrency}"))
        .arg(format!("-d{}s", period.as_secs().max(1)))
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // "Requests/sec:  71234.56"
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The endpoint's own rate: `concurrency` clients posting refresh-shaped forms for `period`.
async fn raw_rate(url: &str, concurrency: usize, period: Duration) -> f64 {
    let client = reqwest::Client::new();
    let count = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + period;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, count, url) = (client.clone(), count.clone(), url.to_owned());
        tasks.spawn(async move {
            while Instant::now() < until {
                let r = client
                    .post(&url)
                    .basic_auth("bench", Some("bench-secret"))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", "rt")])
                    .send()
                    .await;
                if let Ok(r) = r
                    && r.bytes().await.is_ok()
                {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    count.load(Ordering::Relaxed) as f64 / period.as_secs_f64()
}

/// After a first sweep: every connection due again, in the order that sweep left them, with
/// its access token expired (two hours earlier, both). Returns the first check id to come.
async fn due_again(db: &DatabaseConfig) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = match &db.url {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) => {
            use secrecy::ExposeSecret;
            url.expose_secret().to_owned()
        }
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    sqlx::query(
        "UPDATE connections SET next_check_at = next_check_at - 7200000, \
         access_expires_at = access_expires_at - 7200000",
    )
    .execute(&mut conn)
    .await
    .expect("due again");
    sqlx::query_scalar::<_, i64>("SELECT CAST(COALESCE(MAX(id), 0) + 1 AS BIGINT) FROM checks")
        .fetch_one(&mut conn)
        .await
        .expect("last check")
}

/// Check latencies in ms, sorted: the provider calls, and from the claim to the stored result
/// (which includes the wait for a slot: a batch is claimed ahead); and the database's size.
async fn results(
    db: &DatabaseConfig,
    keyring: Arc<Keyring>,
    dir: &Path,
    first_measured: i64,
) -> (Vec<u64>, Vec<u64>, u64) {
    use sqlx::Connection;
    let _ = store::open(db, keyring).await.expect("open store");
    sqlx::any::install_default_drivers();
    let (url, size_sql) = match &db.url {
        DatabaseUrl::Sqlite(path) => (format!("sqlite://{}", path.display()), None),
        DatabaseUrl::Postgres(url) => {
            use secrecy::ExposeSecret;
            (
                url.expose_secret().to_owned(),
                Some("SELECT pg_database_size(current_database())"),
            )
        }
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT latency_ms, finished_at - started_at FROM checks \
         WHERE finished_at IS NOT NULL AND id >= $1",
    )
    .bind(first_measured)
    .fetch_all(&mut conn)
    .await
    .expect("latencies");
    let sorted = |v: Vec<i64>| {
        let mut v: Vec<u64> = v.into_iter().map(|l| l.max(0) as u64).collect();
        v.sort_unstable();
        v
    };
    let (calls, stored): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
    if size_sql.is_none() {
        // The size of the database itself, as the peer's is measured: the WAL folded in.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .expect("checkpoint");
    }
    let bytes = match size_sql {
        Some(sql) => sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut conn)
            .await
            .expect("size") as u64,
        None => [
            "state/credwatch.db",
            "state/credwatch.db-wal",
            "state/credwatch.db-shm",
        ]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum(),
    };
    (sorted(calls), sorted(stored), bytes)
}
