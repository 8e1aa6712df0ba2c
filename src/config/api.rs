//! `[api]` and `[events]`: the platform's listener, the keys that may call it, and how long
//! the event log keeps what happened.

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::validate::Checker;
use super::*;

/// The platform's API: its own listener, apart from the public one.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Open client connections at most; more wait in the kernel's queue.
    pub max_connections: u32,
    /// The longest any request may take, a refresh it waits for included.
    pub request_timeout: Duration,
    /// Request bodies larger than this are refused unread.
    pub max_body_bytes: usize,
    pub keys: Vec<ApiKeyConfig>,
}

/// One caller of the API: a name for the logs and metrics, and the SHA-256 of its key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    pub name: String,
    pub sha256: [u8; 32],
}

impl fmt::Debug for ApiKeyConfig {
    // The hash is not the key, but it has no business in a log either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of an API key, as `[[api.keys]] sha256` holds it.
pub fn api_key_sha256(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a key's name may be: it appears in logs and metric labels.
pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// `[events]`: how long the event log keeps what happened.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Events older than this are removed (unless a webhook delivery still waits for one).
    pub retention: Duration,
}

impl Checker<'_> {
    pub(super) fn events(&mut self, s: raw::Events) -> Option<EventsConfig> {
        let retention = self.duration_at_least(
            "events.retention",
            s.retention.as_deref(),
            "30d",
            Duration::from_secs(3600),
            "must be at least 1h: platforms read the feed from where they stopped",
        )?;
        Some(EventsConfig { retention })
    }

    pub(super) fn api(&mut self, s: raw::Api, limits: Option<&LimitsConfig>) -> Option<ApiConfig> {
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:8081".to_owned());
        let listen = match listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    "api.listen",
                    "expected an address and port such as 127.0.0.1:8081 or [::1]:8081",
                );
                None
            }
        };
        let max_connections = match s.max_connections.unwrap_or(1024) {
            n @ 1..=100_000 => Some(n),
            _ => {
                self.problem("api.max_connections", "must be between 1 and 100000");
                None
            }
        };
        // By default long enough for a hand-out that waits for a whole check (two provider
        // calls and the write), and no longer.
        let needed = limits.map_or(Duration::from_secs(65), LimitsConfig::lease_needed);
        let request_timeout = match s.request_timeout.as_deref() {
            None => Some(needed + Duration::from_secs(5)),
            Some(text) => self.duration("api.request_timeout", Some(text), "60s"),
        };
        if let Some(t) = request_timeout
            && t < needed
        {
            self.problem(
                "api.request_timeout",
                format!(
                    "must be at least {} (two provider requests of limits.request_timeout and a margin): a token hand-out may wait for a refresh",
                    humantime::format_duration(needed)
                ),
            );
        }
        let max_body_bytes = match s.max_body_bytes.unwrap_or(1024 * 1024) {
            n @ 1024..=67_108_864 => usize::try_from(n).ok(),
            _ => {
                self.problem("api.max_body_bytes", "must be between 1024 and 67108864");
                None
            }
        };
        let mut keys: Vec<ApiKeyConfig> = Vec::with_capacity(s.keys.len());
        let mut ok = true;
        for (i, k) in s.keys.into_iter().enumerate() {
            let key = format!("api.keys[{i}]");
            let Some(name) = k.name.filter(|n| valid_key_name(n)) else {
                self.problem(
                    &format!("{key}.name"),
                    "expected 1 to 64 letters, digits, '-', '_' or '.'",
                );
                ok = false;
                continue;
            };
            if keys.iter().any(|k| k.name == name) {
                self.problem(&format!("{key}.name"), format!("\"{name}\" is named twice"));
                ok = false;
                continue;
            }
            let sha256 = match (k.sha256, k.key_file) {
                (Some(hex), None) => from_hex(&hex).or_else(|| {
                    self.problem(
                        &format!("{key}.sha256"),
                        "expected 64 hex digits (what `credwatch api-key generate` prints)",
                    );
                    None
                }),
                (None, Some(file)) => {
                    let secret = self.secret(&format!("{key}.key"), None, Some(&file));
                    match secret.flatten() {
                        Some(s) => {
                            use secrecy::ExposeSecret;
                            Some(api_key_sha256(s.expose_secret()))
                        }
                        None => None,
                    }
                }
                _ => {
                    self.problem(&key, "set either sha256 or key_file");
                    None
                }
            };
            match sha256 {
                Some(sha256) => keys.push(ApiKeyConfig { name, sha256 }),
                None => ok = false,
            }
        }
        Some(ApiConfig {
            listen: listen?,
            max_connections: max_connections?,
            request_timeout: request_timeout?,
            max_body_bytes: max_body_bytes?,
            keys: if ok { keys } else { return None },
        })
    }
}
