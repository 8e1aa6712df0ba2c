//! The real peers, on 127.0.0.1: oidc-provider (OAuth server), aiosmtpd (SMTP server) and a
//! throwaway PostgreSQL. Installed by `tests/peers/setup`; each is stopped when its handle drops.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::wait_until;

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: run tests/peers/setup first (the README's test command does)",
        path.display()
    );
}

/// A free port on 127.0.0.1, for peers that must know their port before they start. Chosen
/// below the kernel's ephemeral range (32768 and up): a port from that range, free when asked,
/// can be taken by any outgoing connection of a test running alongside before its server binds
/// it. Never the same port twice in one run.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = rand::thread_rng().gen_range(20_000..32_000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// oidc-provider 9.13.3 with refresh-token rotation, reuse detection, revocation and introspection.
pub struct OidcServer {
    child: Child,
    pub port: u16,
}

impl OidcServer {
    /// `options` is the JSON the server script reads (clients, ttl, rotateRefreshToken).
    pub async fn spawn(options: serde_json::Value) -> Self {
        let script = peers_dir().join("oidc-server.mjs");
        require(&peers_dir().join("node_modules/oidc-provider"));
        let port = free_port();
        let mut child = Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .env("OIDC_TEST_OPTIONS", options.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("oidc-provider listening") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(ready, Ok(true)), "oidc-provider did not start");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, port }
    }

    /// SIGSTOP (a provider that hangs) or SIGCONT (back again).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("oidc-provider pid") as i32;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({signal})");
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }
}

/// aiosmtpd 1.4.6 delivering into a Maildir that tests read; it refuses `gone@…` for good.
pub struct SmtpServer {
    _child: Child,
    pub port: u16,
    pub maildir: tempfile::TempDir,
}

impl SmtpServer {
    pub async fn spawn() -> Self {
        Self::spawn_on(free_port()).await
    }

    /// One that refuses every message at DATA while `refuse` exists.
    pub async fn spawn_refusing_data(refuse: &Path) -> Self {
        Self::start(free_port(), Some(refuse)).await
    }

    /// On a given port, to come back where a stopped one was.
    pub async fn spawn_on(port: u16) -> Self {
        Self::start(port, None).await
    }

    async fn start(port: u16, refuse_data: Option<&Path>) -> Self {
        let python = peers_dir().join(".venv/bin/python");
        require(&python);
        let maildir = tempfile::tempdir().expect("maildir");
        let child = Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "smtp_handlers.RejectingMailbox",
            ])
            .env("PYTHONPATH", peers_dir())
            .env("SMTP_REFUSE_DATA", refuse_data.unwrap_or(Path::new("")))
            // aiosmtpd creates the Maildir only when the directory does not exist yet.
            .arg(maildir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn aiosmtpd");
        wait_until(
            "aiosmtpd to accept connections",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        Self {
            _child: child,
            port,
            maildir,
        }
    }

    /// The messages delivered so far, quoted-printable parts decoded so tests can read them.
    pub fn messages(&self) -> Vec<String> {
        let new = self.maildir.path().join("maildir/new");
        super::read_dir_names(&new)
            .iter()
            .filter_map(|n| std::fs::read_to_string(new.join(n)).ok())
            .map(|m| decode_quoted_printable(&m))
            .collect()
    }
}

/// Soft line breaks removed and `=HH` escapes decoded (RFC 2045 §6.7); the rest as it is.
pub fn decode_quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'=', Some(h), Some(l))
                if bytes[i + 1].is_ascii_uppercase() || bytes[i + 1].is_ascii_digit() =>
            {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One PostgreSQL cluster per test process, started on first use; each caller gets its own database.
pub struct Postgres {
    port: u16,
    /// Never waited on: it dies with this process (PR_SET_PDEATHSIG), its directory with the next run.
    _server: std::process::Child,
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();

pub async fn postgres_database() -> String {
    let pg = tokio::task::spawn_blocking(|| POSTGRES.get_or_init(Postgres::start))
        .await
        .expect("start postgres");
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let name = format!("t_{}", uuid_like());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("connect to test postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .expect("create test database");
    pool.close().await;
    format!("postgres://postgres@127.0.0.1:{}/{name}", pg.port)
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| (b'a' + rng.gen_range(0..26)) as char)
        .collect()
}

fn pg_bin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.exists());
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .find(|p| p.exists())
        });
    on_path
        .or(debian)
        .unwrap_or_else(|| panic!("PostgreSQL's {name} not found: run tests/peers/setup first"))
}

impl Postgres {
    /// initdb and postgres refuse to run as root, so as root they run as the `postgres` user.
    /// The server is started from a thread that lives as long as the test process and dies with
    /// it (PR_SET_PDEATHSIG), so no cluster outlives its tests.
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Self::start_owned());
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("postgres starter thread")
    }

    fn start_owned() -> Self {
        let base = std::env::temp_dir().join(format!("credwatch-test-pg-{}", std::process::id()));
        remove_stale_clusters();
        std::fs::create_dir_all(&base).expect("pg dir");
        let as_user = postgres_user();
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(&base, Some(uid), Some(gid)).expect("chown pg dir");
        }
        let data = base.join("data");
        initdb(&data, as_user);
        let port = free_port();
        let mut server = std::process::Command::new(pg_bin("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ])
            .arg("-k")
            .arg(&base)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = as_user {
            server.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe and only changes this child's own settings.
        unsafe {
            server.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let server = server.spawn().expect("start postgres");
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "postgres did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            _server: server,
        }
    }
}

/// A PostgreSQL cluster of one test's own, to stop and start under a daemon: the shared one
/// must stay up for the others. Stopped (fast) and removed on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    as_user: Option<(u32, u32)>,
    server: Option<std::process::Child>,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(|| {
            let dir = tempfile::Builder::new()
                .prefix("credwatch-private-pg-")
                .tempdir()
                .expect("pg dir");
            let as_user = postgres_user();
            if let Some((uid, gid)) = as_user {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown pg dir");
            }
            initdb(&dir.path().join("data"), as_user);
            let mut pg = Self {
                port: free_port(),
                dir,
                as_user,
                server: None,
            };
            pg.run();
            pg
        })
        .await
        .expect("start a private postgres")
    }

    /// The `postgres` database's URL (a daemon may use it as its own).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown (`pg_ctl stop -m fast`): sessions are cut, transactions rolled back.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
            let _ = server.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.run();
    }

    fn run(&mut self) {
        let mut server = std::process::Command::new(pg_bin("postgres"));
        server
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.as_user {
            server.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe and only changes this child's own settings.
        unsafe {
            server.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.server = Some(server.spawn().expect("start postgres"));
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "postgres did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// initdb and postgres refuse to run as root: as root they run as the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: getuid and getpwnam have no preconditions; the returned pointer is read at once.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root needs a `postgres` user for the test cluster"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn initdb(data: &Path, as_user: Option<(u32, u32)>) {
    let mut initdb = std::process::Command::new(pg_bin("initdb"));
    initdb
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(data);
    if let Some((uid, gid)) = as_user {
        initdb.uid(uid).gid(gid);
    }
    let out = initdb.output().expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clusters of test processes that are gone (killed before they could clean up).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("credwatch-test-pg-")
            .and_then(|p| p.parse::<i32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Follows redirects from `start` as a browser does, carrying the cookies they set (the
/// provider keeps its interaction in them), and returns the first one to a URL starting
/// with `stop`, unfollowed. (By hand rather than with reqwest's cookie store: that feature
/// would be built into the benchmark's binary too, which a release build does not have.)
pub async fn follow_until(start: &str, stop: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut jar: std::collections::BTreeMap<String, String> = Default::default();
    let mut url = reqwest::Url::parse(start).expect("start url");
    for _ in 0..20 {
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut request = client.get(url.clone());
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        let r = request.send().await.expect("a provider's page");
        for set in r.headers().get_all("set-cookie") {
            let pair = set
                .to_str()
                .expect("cookie")
                .split(';')
                .next()
                .unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                jar.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let status = r.status();
        let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) else {
            panic!(
                "{url} answered {status} without a redirect: {}",
                r.text().await.unwrap_or_default()
            );
        };
        let next = url.join(location).expect("redirect url");
        if next.as_str().starts_with(stop) {
            return next.to_string();
        }
        url = next;
    }
    panic!("more than 20 redirects from {start}");
}

/// The redirect URI the test server's default client is registered with. Nothing listens there:
/// the code is read from the redirect itself.
pub const CALLBACK: &str = "http://127.0.0.1/oauth/callback";

impl OidcServer {
    /// Runs a real authorization-code grant with PKCE for `account` through the automated consent
    /// and returns the token response, exactly as the provider sent it.
    pub async fn grant(&self, account: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        // RFC 7636: 43 to 128 characters.
        let verifier = format!("{}{}{}", uuid_like(), uuid_like(), uuid_like());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let authorize = reqwest::Url::parse_with_params(
            &self.url("/auth"),
            &[
                ("client_id", "credwatch"),
                ("response_type", "code"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid email offline_access"),
                ("prompt", "consent"),
                ("state", "s"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", account),
            ],
        )
        .expect("authorize url");
        let location = follow_until(authorize.as_str(), CALLBACK).await;
        let callback = reqwest::Url::parse(&location).expect("callback url");
        let code = callback
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"));
        let response = reqwest::Client::new()
            .post(self.url("/token"))
            .basic_auth("credwatch", Some("credwatch-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .expect("token request");
        let status = response.status();
        let body = response.text().await.expect("token response");
        assert!(status.is_success(), "code exchange failed: {status} {body}");
        body
    }
}
