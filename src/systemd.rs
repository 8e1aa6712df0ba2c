//! The systemd service protocol (sd_notify): READY=1 once the store is open, a STATUS= line,
//! RELOADING=1 / STOPPING=1, and WATCHDOG=1 pings. Nothing is sent, and no task runs, unless
//! systemd gave us a NOTIFY_SOCKET.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and `WATCHDOG_USEC`
    /// (honoured when `WATCHDOG_PID` is unset or ours).
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes())
                }
                None => SocketAddr::from_pathname(&path),
            };
            match (UnixDatagram::unbound(), addr) {
                (Ok(s), Ok(a)) => Some((s, a)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!("NOTIFY_SOCKET {path} is not usable: {e}");
                    None
                }
            }
        });
        let ours = std::env::var("WATCHDOG_PID")
            .map(|p| p.trim() == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && ours)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to ping: half the watchdog timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog.map(|w| w / 2))
    }

    /// Sends one message; a service manager that went away is not our failure.
    pub fn notify(&self, message: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            tracing::debug!("sd_notify {message:?}: {e}");
        }
    }

    pub fn status(&self, line: &str) {
        self.notify(&status_message(line));
    }

    /// READY=1 with the first STATUS= line in the same message: systemd takes both at once, so
    /// nobody sees the service active with no status yet.
    pub fn ready(&self, line: &str) {
        self.notify(&format!("READY=1\n{}", status_message(line)));
    }
}

fn status_message(line: &str) -> String {
    // One line: systemd shows it in `systemctl status`.
    let line: String = line.chars().filter(|c| *c != '\n').collect();
    format!("STATUS={line}")
}
