//! The Debian package under a real systemd: a minimal Debian made from Debian's packages
//! (mmdebstrap) is booted with `systemd-nspawn -b`, the package built by `cargo deb` is
//! installed in it, and the service is driven with systemctl as an operator would: it starts
//! (READY, STATUS=), a reload applies a change, a connection the operator adds is checked, the
//! watchdog restarts a hung daemon, the journal has its lines, and a stop is clean.
//!
//! It needs root and the tools tests/peers/setup installs. Where the machine cannot do it (not
//! root, no tools, no Debian mirror, no container boot), it says exactly why on stderr and
//! skips instead of passing silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::fake::FakeProvider;

fn skip(why: &str) {
    // Straight to the file descriptor: libtest captures only the print macros.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED under_systemd::the_package_runs_under_a_real_systemd: {why}"
    );
}

fn has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn cannot_run() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (systemd-nspawn boots a container)".into());
    }
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
    ] {
        if !has(tool) {
            return Some(format!("{tool} is not installed (Debian's {package})"));
        }
    }
    let deb = Command::new("cargo").args(["deb", "--version"]).output();
    if !deb.is_ok_and(|o| o.status.success()) {
        return Some("cargo-deb is not installed (tests/peers/setup installs it)".into());
    }
    None
}

fn tail(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// `cargo deb` on the test build's binary (no second, release build).
fn build_package(out: &Path) -> PathBuf {
    let built = Command::new("cargo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--quiet",
            "-o",
        ])
        .arg(out)
        .output()
        .expect("cargo deb");
    assert!(
        built.status.success(),
        "cargo deb failed:\n{}",
        tail(&built)
    );
    std::fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb")
}

struct Container {
    nspawn: std::process::Child,
    init: i32,
}

impl Container {
    /// Boots `root`; `Err` with the reason when this machine cannot.
    fn boot(root: &Path) -> Result<Self, String> {
        let mut nspawn = Command::new("systemd-nspawn")
            .args(["--register=no", "--keep-unit", "--quiet", "-D"])
            .arg(root)
            .arg("-b")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run systemd-nspawn: {e}"))?;
        let parent = nspawn.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        let init = loop {
            if let Ok(Some(status)) = nspawn.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = nspawn.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("systemd-nspawn exited ({status}): {}", err.trim()));
            }
            if let Some(pid) = child_of(parent) {
                break pid;
            }
            if Instant::now() > deadline {
                let _ = nspawn.kill();
                return Err("systemd-nspawn started no init within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let container = Self { nspawn, init };
        // Until systemd has opened its socket, systemctl cannot connect: ask again.
        let until = Instant::now() + Duration::from_secs(60);
        let (state, said) = loop {
            let state =
                container.run(&["timeout", "60", "systemctl", "is-system-running", "--wait"]);
            let said = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            if !said.is_empty() || Instant::now() > until {
                break (state, said);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if said != "running" && said != "degraded" {
            return Err(format!(
                "the container's systemd did not come up: {said:?} ({})",
                tail(&state)
            ));
        }
        Ok(container)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a"])
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed:\n{}", tail(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn show(&self, property: &str) -> String {
        self.ok(&["systemctl", "show", "-p", property, "--value", "credwatch"])
    }

    fn journal(&self) -> String {
        self.ok(&["journalctl", "-u", "credwatch", "--no-pager", "-o", "cat"])
    }

    fn wait_for(&self, what: &str, deadline: Duration, cond: impl Fn(&Self) -> bool) {
        let until = Instant::now() + deadline;
        while !cond(self) {
            assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for {what}; the journal:\n{}",
                self.journal()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.run(&["systemctl", "poweroff"]);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Killing nspawn alone would orphan the container; killing its init ends the whole
        // PID namespace, and nspawn with it.
        // SAFETY: kill(2) on a pid we started; no memory is involved.
        unsafe { libc::kill(self.init, libc::SIGKILL) };
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The container's init: the `systemd` whose parent is `parent` (nspawn).
fn child_of(parent: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        // nspawn forks before the container's init execs: wait for systemd itself.
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if ppid == Some(parent) && comm.trim() == "systemd" {
            return Some(pid);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_package_runs_under_a_real_systemd() {
    if let Some(why) = cannot_run() {
        return skip(&why);
    }
    let work = tempfile::Builder::new()
        .prefix("credwatch-systemd-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let deb = build_package(work.path());
    let root = work.path().join("root");
    let made = Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus",
            "bookworm",
        ])
        .arg(&root)
        .output()
        .expect("mmdebstrap");
    if !made.status.success() {
        return skip(&format!(
            "mmdebstrap could not make a Debian root (no Debian mirror?):\n{}",
            tail(&made)
        ));
    }
    // /tmp is the container's own tmpfs: the package goes where the container sees it.
    std::fs::copy(&deb, root.join("root/credwatch.deb")).unwrap();
    let provider = FakeProvider::spawn().await;

    let container = match Container::boot(&root) {
        Ok(c) => c,
        Err(why) => return skip(&why),
    };
    let c = tokio::task::spawn_blocking(move || {
        run_the_checks(&container, &provider.token_url());
        drop(container);
        provider
    })
    .await
    .expect("the checks");
    assert!(c.token_calls() > 0, "the fake provider was never called");
}

fn run_the_checks(c: &Container, token_url: &str) {
    // 1. Install: the key is generated, the unit enabled and started, READY reached.
    let installed = c.ok(&["dpkg", "-i", "/root/credwatch.deb"]);
    assert!(
        installed.contains("generated /etc/credwatch/credwatch.key"),
        "{installed}"
    );
    let key = c.ok(&["stat", "-c", "%a %U", "/etc/credwatch/credwatch.key"]);
    assert_eq!(key, "600 root");
    assert_eq!(
        c.ok(&["stat", "-c", "%a", "/etc/credwatch/credwatch.toml"]),
        "644"
    );
    c.wait_for("the service to be active", Duration::from_secs(30), |c| {
        c.show("ActiveState") == "active"
    });
    // Type=notify: active means READY=1 was sent; STATUS= is its one line.
    let status = c.show("StatusText");
    assert!(status.contains("0 connections"), "{status:?}");
    assert_eq!(c.show("UnitFileState"), "enabled");
    let man = c.run(&["test", "-e", "/usr/share/man/man1/credwatch.1.gz"]);
    assert!(man.status.success(), "no man page");

    // 2. A reload applies a change: a provider, and a sweep every second.
    let config = c.ok(&["cat", "/etc/credwatch/credwatch.toml"]);
    let config = config.replace("sweep = \"0 * * * * *\"", "sweep = \"* * * * * *\"")
        + &format!(
            "\n[providers.acme]\ntoken_url = \"{token_url}\"\n\
             authorize_url = \"http://127.0.0.1:9/authorize\"\nclient_id = \"credwatch\"\n\
             client_secret = \"credwatch-secret\"\n"
        );
    let written = Command::new("nsenter")
        .args([
            "-t",
            &c.init.to_string(),
            "-a",
            "sh",
            "-c",
            "cat > /etc/credwatch/credwatch.toml",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(config.as_bytes())?;
            child.wait()
        })
        .expect("write the config");
    assert!(written.success());
    let pid = c.show("MainPID");
    c.ok(&["systemctl", "reload", "credwatch"]);
    c.wait_for("the reload", Duration::from_secs(30), |c| {
        c.journal().contains("config reloaded")
    });
    assert_eq!(c.show("MainPID"), pid, "a reload is not a restart");

    // 3. The operator adds a connection (as root, beside the service); the daemon checks it.
    let added =
        Command::new("nsenter")
            .args([
                "-t",
                &c.init.to_string(),
                "-a",
                "credwatch",
                "connection",
                "add",
            ])
            .args([
                "--provider",
                "acme",
                "--name",
                "CRM",
                "--owner",
                "ada@example.com",
                "--account",
                "ada",
                "--tokens",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().expect("stdin").write_all(
                    br#"{"access_token":"at","refresh_token":"rt","expires_in":3600}"#,
                )?;
                child.wait_with_output()
            })
            .expect("connection add");
    assert!(added.status.success(), "{}", tail(&added));
    c.wait_for("the daemon's check of it", Duration::from_secs(30), |c| {
        c.journal().contains("healthy 1")
    });
    let status = c.ok(&["credwatch", "status"]);
    assert!(status.contains("healthy"), "{status}");

    // 4. A hung daemon: the watchdog restarts it (60 s in the unit; 3 s here).
    c.ok(&["mkdir", "-p", "/run/systemd/system/credwatch.service.d"]);
    c.ok(&[
        "sh",
        "-c",
        "printf '[Service]\\nWatchdogSec=3s\\nTimeoutAbortSec=3s\\n' > /run/systemd/system/credwatch.service.d/watchdog.conf",
    ]);
    c.ok(&["systemctl", "daemon-reload"]);
    c.ok(&["systemctl", "restart", "credwatch"]);
    c.wait_for("the restart", Duration::from_secs(30), |c| {
        c.show("ActiveState") == "active"
    });
    let hung = c.show("MainPID");
    let restarts: u32 = c.show("NRestarts").parse().unwrap();
    c.ok(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "--signal=SIGSTOP",
        "credwatch",
    ]);
    c.wait_for("the watchdog's restart", Duration::from_secs(60), |c| {
        c.show("NRestarts").parse::<u32>().unwrap_or(0) > restarts
            && c.show("ActiveState") == "active"
    });
    assert_ne!(c.show("MainPID"), hung);
    assert!(c.journal().contains("Watchdog timeout"), "{}", c.journal());

    // 5. The journal has the daemon's own lines; a stop is clean.
    let journal = c.journal();
    assert!(journal.contains("credwatch started"), "{journal}");
    c.ok(&["systemctl", "stop", "credwatch"]);
    assert_eq!(c.show("ActiveState"), "inactive");
    assert_eq!(c.show("Result"), "success", "{}", c.journal());
    assert!(c.journal().contains("stopped"), "{}", c.journal());
}
