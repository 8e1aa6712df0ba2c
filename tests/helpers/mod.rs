//! The test harness: a throwaway credwatch installation (`TestEnv`), the binary run as an operator
//! would run it, the daemon started with `spawn`, and the real peers in `peers`.

pub mod browser;
pub mod fake;
pub mod peers;
pub mod receiver;

use std::path::{Path, PathBuf};

use sha2::Digest;
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_credwatch");

/// Runs the scenario `async fn NAME(db: Db)` as two tests, `NAME::sqlite` and `NAME::postgres`:
/// same behaviour, same assertions, on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
        }
    )+};
}

/// The first link in `message` (an e-mail's text) that starts with `prefix`.
pub fn link_in(message: &str, prefix: &str) -> String {
    let at = message
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {message}"));
    message[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect()
}

/// Waits for `cond` to hold, checking every `every`, failing the test with `what` at `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A config directory with a key, a SQLite database and a mail directory, removed on drop.
/// The key every test installation's API accepts (as `[[api.keys]] name = "platform"`).
pub const API_KEY: &str = "cwk_test-key-for-the-platform-api-0123456789ab";

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The PostgreSQL database, when the installation uses one.
    pub postgres: Option<String>,
}

/// The backends scenario tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

impl TestEnv {
    /// An installation with one provider, `acme`, pointing at `token_url`.
    pub fn new() -> Self {
        Self::with_providers(&[("acme", "http://127.0.0.1:9/token")])
    }

    pub fn with_providers(providers: &[(&str, &str)]) -> Self {
        let mut extra = String::new();
        for (id, token_url) in providers {
            extra.push_str(&format!(
                "\n[providers.{id}]\ntoken_url = \"{token_url}\"\nauthorize_url = \"http://127.0.0.1:9/authorize\"\n\
                 client_id = \"credwatch\"\nclient_secret = \"credwatch-secret\"\nscopes = \"openid offline_access\"\n"
            ));
        }
        Self::with_config(&extra)
    }

    /// An installation whose config is the base sections followed by `extra`.
    pub fn with_config(extra: &str) -> Self {
        Self::with_database(None, extra)
    }

    /// The same installation on either backend; PostgreSQL gets a fresh database of its own.
    pub async fn with_config_on(db: Db, extra: &str) -> Self {
        match db {
            Db::Sqlite => Self::with_config(extra),
            Db::Postgres => Self::with_database(Some(peers::postgres_database().await), extra),
        }
    }

    fn with_database(postgres: Option<String>, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("credwatch.toml");
        let url = postgres
            .clone()
            .unwrap_or_else(|| "sqlite://state/credwatch.db".to_owned());
        let mut base = format!(
            "[database]\nurl = \"{url}\"\n\n\
             [encryption]\nkey_file = \"credwatch.key\"\n\n\
             [log]\nlevel = \"credwatch=debug,info\"\n"
        );
        // Daemons of tests running side by side each need their own port.
        if !extra.contains("[http]") {
            let port = peers::free_port();
            base.push_str(&format!(
                "\n[http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}/\"\n"
            ));
        }
        if !extra.contains("[api]") {
            let port = peers::free_port();
            let hash: String = sha2::Sha256::digest(API_KEY.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            base.push_str(&format!(
                "\n[api]\nlisten = \"127.0.0.1:{port}\"\n\n[[api.keys]]\nname = \"platform\"\nsha256 = \"{hash}\"\n"
            ));
        }
        if !extra.contains("[mail]") {
            base.push_str("\n[mail]\ntransport = \"file\"\ndir = \"mail\"\n");
        }
        // A test that sets its own schedule gives the whole section.
        if !extra.contains("[schedule]") {
            base.push_str("\n[schedule]\nsweep = \"0 * * * * *\"\n");
        }
        std::fs::write(&config, format!("{base}{extra}")).expect("write config");
        let out = std::process::Command::new(BIN)
            .args(["key", "generate"])
            .arg(dir.path().join("credwatch.key"))
            .output()
            .expect("run credwatch key generate");
        assert!(
            out.status.success(),
            "key generate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            config,
            postgres,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The daemon's HTTP address, as the config's `public_base_url` gives it (no trailing '/').
    pub fn base_url(&self) -> String {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let line = text
            .lines()
            .find(|l| l.starts_with("public_base_url"))
            .expect("public_base_url in the config");
        line.split('"')
            .nth(1)
            .expect("quoted")
            .trim_end_matches('/')
            .to_owned()
    }

    /// The platform API's address (no trailing '/').
    pub fn api_url(&self) -> String {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let mut in_api = false;
        for line in text.lines() {
            if line.starts_with('[') {
                in_api = line.trim() == "[api]";
            } else if in_api && line.starts_with("listen") {
                let addr = line.split('"').nth(1).expect("quoted");
                return format!("http://{addr}");
            }
        }
        panic!("no [api] listen in the config")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path("state/credwatch.db")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        cmd
    }

    /// Starts a credwatch command and leaves it running (killed on drop).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn credwatch")
    }

    /// Runs a credwatch command to completion.
    pub async fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, b"").await
    }

    pub async fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn credwatch");
        let mut pipe = child.stdin.take().expect("stdin");
        // The command may exit before reading stdin (bad arguments): a broken pipe is fine.
        let _ = pipe.write_all(stdin).await;
        drop(pipe);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("credwatch command timed out")
            .expect("credwatch output")
    }

    /// Runs a command that must succeed and returns its trimmed stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(
            out.status.success(),
            "credwatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8 stdout")
            .trim()
            .to_owned()
    }

    /// Adds a connection to `acme` from a token response and returns its id. A response
    /// without an id_token names no account: the connection is then stored without one.
    pub async fn add_connection(&self, owner: &str, tokens_json: &str) -> String {
        let mut args = vec![
            "connection",
            "add",
            "--provider",
            "acme",
            "--name",
            "CRM",
            "--owner",
            owner,
            "--tokens",
            "-",
        ];
        if !tokens_json.contains("id_token") {
            args.push("--allow-unknown-account");
        }
        let out = self.cli_with_stdin(&args, tokens_json.as_bytes()).await;
        assert!(
            out.status.success(),
            "connection add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Every row of every table, in a stable order: equal snapshots mean nothing was written.
    pub async fn db_snapshot(&self) -> Vec<String> {
        let tables = self
            .rows(if self.postgres.is_some() {
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
            } else {
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            })
            .await;
        let mut out = Vec::new();
        for table in tables {
            for row in self
                .rows(&format!("SELECT * FROM \"{}\" ORDER BY 1", table[0]))
                .await
            {
                out.push(format!("{}: {}", table[0], row.join(" | ")));
            }
        }
        out
    }

    /// The rows of a query on the test database, each cell as text ("NULL" for null, booleans
    /// as 1 and 0 on both backends).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        use sqlx::{Connection, Row, ValueRef};
        // Every cell as text, whatever the row type.
        macro_rules! cells {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|row| {
                        (0..row.columns().len())
                            .map(|i| {
                                if row.try_get_raw(i).expect("cell").is_null() {
                                    return "NULL".to_owned();
                                }
                                row.try_get::<i64, _>(i)
                                    .map(|v| v.to_string())
                                    .or_else(|_| {
                                        row.try_get::<bool, _>(i).map(|b| i64::from(b).to_string())
                                    })
                                    .or_else(|_| row.try_get::<String, _>(i))
                                    .or_else(|_| {
                                        row.try_get::<Vec<u8>, _>(i).map(|b| format!("{b:?}"))
                                    })
                                    .unwrap_or_else(|_| "?".to_owned())
                            })
                            .collect()
                    })
                    .collect()
            };
        }
        let fail = |e: sqlx::Error| -> ! { panic!("{sql}: {e}") };
        match &self.postgres {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .unwrap_or_else(|e| fail(e));
                let rows = sqlx::query(sql)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| fail(e));
                let _ = conn.close().await;
                cells!(rows)
            }
            None => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.db_path())
                    .read_only(true);
                let mut conn = sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .unwrap_or_else(|e| fail(e));
                let rows = sqlx::query(sql)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| fail(e));
                let _ = conn.close().await;
                cells!(rows)
            }
        }
    }

    /// The first cell of the first row of a query.
    pub async fn value(&self, sql: &str) -> String {
        self.rows(sql)
            .await
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_else(|| panic!("{sql}: no rows"))
    }

    /// `credwatch check ID --json`: the one report it prints.
    pub async fn check(&self, id: &str) -> serde_json::Value {
        let out = self.ok(&["check", id, "--json"]).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("check output {out:?}: {e}"))
    }

    /// Starts `credwatch run` and waits until it says it has started.
    pub async fn spawn(&self) -> Daemon {
        self.spawn_with(&self.config).await
    }

    /// Starts `credwatch run` with another config file (a second replica of this installation).
    pub async fn spawn_with(&self, config: &Path) -> Daemon {
        self.spawn_with_env(config, &[]).await
    }

    /// Starts `credwatch run` with extra environment variables (as systemd would set them).
    pub async fn spawn_with_env(&self, config: &Path, env: &[(&str, &str)]) -> Daemon {
        self.spawn_limited(config, env, None).await
    }

    /// Starts `credwatch run` allowed at most `limit` open file descriptors.
    pub async fn spawn_with_nofile(&self, limit: u64) -> Daemon {
        self.spawn_limited(&self.config, &[], Some(limit)).await
    }

    async fn spawn_limited(
        &self,
        config: &Path,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Daemon {
        let mut child = Command::new(BIN);
        child
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("RUST_LOG")
            // Lines start with their time, even when the tests run under journald.
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .kill_on_drop(true);
        if let Some(limit) = nofile {
            // SAFETY: the closure runs in the child between fork and exec and only calls
            // setrlimit(2), which is async-signal-safe.
            unsafe {
                child.pre_exec(move || {
                    let r = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = child
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut log = Vec::new();
        let started = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let done = line.contains("credwatch started");
                log.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(started, Ok(true)),
            "daemon did not start; its log:\n{}",
            log.join("\n")
        );
        // Keep draining the log so the daemon never blocks on a full pipe.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for line in log {
            let _ = tx.send(line);
        }
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            log: rx,
            seen: Vec::new(),
        }
    }
}

/// A running `credwatch run`; killed on drop if the test did not stop it.
pub struct Daemon {
    child: Child,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Log lines read so far by `log_until`.
    seen: Vec<String>,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id().expect("daemon pid") as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Reads the log until `cond` holds for the lines so far, and returns them.
    pub async fn log_until(
        &mut self,
        what: &str,
        deadline: Duration,
        cond: impl Fn(&[String]) -> bool,
    ) -> &[String] {
        let until = tokio::time::Instant::now() + deadline;
        while !cond(&self.seen) {
            match tokio::time::timeout_at(until, self.log.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => panic!(
                    "the daemon exited while waiting for {what}; its log:\n{}",
                    self.seen.join("\n")
                ),
                Err(_) => panic!(
                    "timed out after {deadline:?} waiting for {what}; the log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
        &self.seen
    }

    /// Waits for the daemon to exit on its own and returns its exit code and full log.
    pub async fn wait(mut self, deadline: Duration) -> (Option<i32>, Vec<String>) {
        let status = tokio::time::timeout(deadline, self.child.wait())
            .await
            .expect("daemon did not exit in time")
            .expect("wait");
        let mut log = std::mem::take(&mut self.seen);
        while let Some(line) = self.log.recv().await {
            log.push(line);
        }
        (status.code(), log)
    }
}

pub fn read_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
