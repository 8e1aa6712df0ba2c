//! How fast the platform's API answers its two hot calls, through the real daemon over HTTP on
//! SQLite: access tokens handed out from fresh stored tokens (a read and a decrypt each), and
//! positions recorded through `POST /v1/positions` (batches committed with `synchronous = FULL`).
//!
//!     cargo bench --bench api -- [--connections N] [--concurrency C] [--batch B] [--seconds S]
//!
//! The load generator runs on the same machine and takes its share of the cores; the printed
//! CPU split says how much.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credwatch::store::{self, NewConnection, NewPipeline};
use credwatch::tokens::TokenSet;

mod common;

use common::{free_port, machine, process_cpu};

const BIN: &str = env!("CARGO_BIN_EXE_credwatch");
const KEY: &str = "cwk_benchmark-key-0123456789abcdefghijklmnopqrstu";

struct Options {
    connections: usize,
    concurrency: usize,
    batch: usize,
    seconds: u64,
}

fn options() -> Options {
    let mut o = Options {
        connections: 10_000,
        concurrency: 32,
        batch: 500,
        seconds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--connections" => o.connections = value().expect("--connections N"),
            "--concurrency" => o.concurrency = value().expect("--concurrency C"),
            "--batch" => o.batch = value().expect("--batch B"),
            "--seconds" => o.seconds = value().expect("--seconds S") as u64,
            _ => {}
        }
    }
    o
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(bench(o));
}

async fn bench(o: Options) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let hash: String = credwatch::config::api_key_sha256(KEY)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let config = dir.path().join("credwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://state/credwatch.db\"\nmax_connections = 8\n\n\
             [encryption]\nkey_file = \"credwatch.key\"\ncreate_if_missing = true\n\n\
             [mail]\ntransport = \"file\"\ndir = \"mail\"\n\n\
             [http]\nlisten = \"127.0.0.1:{}\"\n\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[api.keys]]\nname = \"bench\"\nsha256 = \"{hash}\"\n\n\
             [log]\nlevel = \"{}\"\n\n\
             [providers.bench]\ntoken_url = \"http://127.0.0.1:9/token\"\n\
             authorize_url = \"http://127.0.0.1:9/a\"\nclient_id = \"bench\"\nclient_secret = \"s\"\n",
            free_port(),
            // Every request is logged at info; at tens of thousands a second that is the
            // bottleneck, so the access log is measured off unless asked for.
            std::env::var("CREDWATCH_BENCH_LOG").unwrap_or_else(|_| "info,credwatch::api::access=warn".into()),
        ),
    )
    .expect("config");
    let loaded = credwatch::config::Config::load(&config).expect("config loads");
    let (connections, pipelines) = seed(&loaded, o.connections).await;

    let mut daemon = common::Child(
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .expect("client");
    wait_ready(&client, &base).await;
    let cpu_before = process_cpu(daemon.0.id());

    if let Some(line) = wrk_handouts(&base, &connections, &o, dir.path()) {
        let cpu = process_cpu(daemon.0.id());
        println!(
            "wrk: {line}; daemon CPU {:.0}% of one core",
            (cpu - cpu_before) / o.seconds as f64 * 100.0
        );
    }
    let cpu_before = process_cpu(daemon.0.id());
    let connections = Arc::new(connections);
    let (c1, b1) = (client.clone(), base.clone());
    let mut handouts = run(&o, move |i| {
        let (client, base) = (&c1, &b1);
        let (client, base, connections) = (client.clone(), base.clone(), connections.clone());
        async move {
            let id = &connections[i % connections.len()];
            let r = client
                .post(format!("{base}/v1/connections/{id}/access-token"))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200, "{:?}", r.text().await);
            r.bytes().await.expect("body");
            1
        }
    })
    .await;
    let cpu_mid = process_cpu(daemon.0.id());

    let pipelines = Arc::new(pipelines);
    let stored_pipelines = pipelines.len();
    let batch = o.batch;
    let mut positions = run(&o, move |i| {
        let (client, base, pipelines) = (client.clone(), base.clone(), pipelines.clone());
        async move {
            let items: Vec<serde_json::Value> = (0..batch)
                .map(|k| {
                    serde_json::json!({
                        "pipeline": pipelines[(i * batch + k) % pipelines.len()],
                        "position": format!("offset-{i}-{k}"),
                    })
                })
                .collect();
            let r = client
                .post(format!("{base}/v1/positions"))
                .bearer_auth(KEY)
                .json(&serde_json::json!({ "positions": items }))
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 200, "{:?}", r.text().await);
            r.bytes().await.expect("body");
            batch
        }
    })
    .await;
    let cpu_end = process_cpu(daemon.0.id());
    daemon.stop();

    println!("credwatch API benchmark (sqlite, synchronous = FULL)");
    println!("  machine          {}", machine());
    println!(
        "  stored           {} connections, {} pipelines; {} clients at once",
        o.connections, stored_pipelines, o.concurrency
    );
    handouts.print("hand-outs", "tokens", cpu_mid - cpu_before);
    positions.print(
        &format!("positions ({batch} per call)"),
        "positions",
        cpu_end - cpu_mid,
    );
}

/// The hand-outs measured by `wrk` (when installed), which leaves the daemon more of the CPU
/// than a client loop in this process does.
fn wrk_handouts(base: &str, ids: &[String], o: &Options, dir: &std::path::Path) -> Option<String> {
    let script = dir.join("handouts.lua");
    let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    std::fs::write(
        &script,
        format!(
            "local ids = {{{}}}\nlocal i = 0\n\
             request = function()\n  i = i + 1\n  return wrk.format(\"POST\", \"/v1/connections/\" .. ids[(i % #ids) + 1] .. \"/access-token\", {{[\"Authorization\"] = \"Bearer {KEY}\"}}, \"\")\nend\n\
             done = function(s, latency, r)\n  io.write(string.format(\"%.0f hand-outs/s, p50 %.2f ms, p99 %.2f ms, %d errors\", s.requests / (s.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, s.errors.status + s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))\nend\n",
            list.join(",")
        ),
    )
    .ok()?;
    let out = std::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{}", o.concurrency),
            &format!("-d{}s", o.seconds),
            "-s",
        ])
        .arg(&script)
        .arg(base)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last().map(str::to_owned)
}

struct Measured {
    items: usize,
    wall: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn print(&mut self, what: &str, unit: &str, daemon_cpu: f64) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
            self.latencies[i].as_secs_f64() * 1000.0
        };
        let secs = self.wall.as_secs_f64();
        println!(
            "  {what:<28} {:.0} {unit}/s ({} calls/s), per call p50 {:.2} ms, p99 {:.2} ms; daemon CPU {:.0}% of one core",
            self.items as f64 / secs,
            (self.latencies.len() as f64 / secs).round(),
            pct(0.50),
            pct(0.99),
            daemon_cpu / secs * 100.0
        );
    }
}

/// `concurrency` loops calling `call(n)` for `seconds`; each call answers how many items it
/// carried.
async fn run<F, Fut>(o: &Options, call: F) -> Measured
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let until = Instant::now() + Duration::from_secs(o.seconds);
    let started = Instant::now();
    let loops: Vec<_> = (0..o.concurrency)
        .map(|w| {
            let call = call.clone();
            let stride = o.concurrency;
            tokio::spawn(async move {
                let (mut items, mut latencies, mut n) = (0, Vec::new(), w);
                while Instant::now() < until {
                    let t = Instant::now();
                    items += call(n).await;
                    latencies.push(t.elapsed());
                    n += stride;
                }
                (items, latencies)
            })
        })
        .collect();
    let mut measured = Measured {
        items: 0,
        wall: Duration::ZERO,
        latencies: Vec::new(),
    };
    for l in loops {
        let (items, latencies) = l.await.expect("loop");
        measured.items += items;
        measured.latencies.extend(latencies);
    }
    measured.wall = started.elapsed();
    measured
}

/// Connections whose access tokens are good for an hour, and a pipeline on each.
async fn seed(config: &credwatch::config::Config, n: usize) -> (Vec<String>, Vec<String>) {
    let store = store::open(&config.database, config.keyring.clone())
        .await
        .expect("open store");
    let now = chrono::Utc::now();
    let mut connections = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let batch = chunk
            .iter()
            .map(|i| NewConnection {
                provider: "bench".parse().expect("provider"),
                name: format!("source {i}"),
                owner: format!("owner-{}@example.com", i % 1000).parse().expect("owner"),
                account: Some(format!("account-{i}")),
                tokens: TokenSet::from_json(
                    format!(r#"{{"access_token":"at-{i}-0123456789abcdef0123456789","refresh_token":"rt-{i}-0123456789abcdef","expires_in":3600}}"#).as_bytes(),
                    now,
                )
                .expect("tokens"),
                external_id: None,
                metadata: None,
                credential_kind: "oauth",
            })
            .collect();
        let ids = store.add_connections(batch, now).await.expect("seed");
        connections.extend(ids.into_iter().map(|id| id.to_string()));
    }
    let mut pipelines = Vec::with_capacity(n);
    for (i, c) in connections.iter().enumerate() {
        let id = store
            .add_pipeline(
                NewPipeline {
                    name: format!("pipeline {i}"),
                    connections: vec![c.parse().expect("id")],
                    position: None,
                    external_id: None,
                },
                now,
            )
            .await
            .expect("pipeline");
        pipelines.push(id.to_string());
    }
    (connections, pipelines)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(r) = client.get(format!("{base}/v1/openapi.json")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon's API did not answer within 30 s");
}
