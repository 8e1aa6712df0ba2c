//! From the layered raw values to a checked `Config`, collecting every problem on the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;

use super::raw;
use super::*;
use crate::crypto::{Keyring, generate_key_file};

const CREDENTIALS_PREFIX: &str = "$CREDENTIALS_DIRECTORY/";

pub(super) fn validate(
    mut map: config::Map<String, config::Value>,
    path: &Path,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let mut c = Checker {
        problems: Vec::new(),
        base_dir,
    };
    let database = c
        .section::<raw::Database>(&mut map, "database")
        .and_then(|s| c.database(s));
    let keyring = c
        .section::<raw::Encryption>(&mut map, "encryption")
        .and_then(|s| c.encryption(s));
    let schedule = c
        .section::<raw::Schedule>(&mut map, "schedule")
        .and_then(|s| c.schedule(s));
    let limits = c
        .section::<raw::Limits>(&mut map, "limits")
        .and_then(|s| c.limits(s));
    let smtp = c.section::<raw::Smtp>(&mut map, "smtp");
    let mail = c
        .section::<raw::Mail>(&mut map, "mail")
        .zip(smtp)
        .and_then(|(m, s)| c.mail(m, s));
    let notices = c
        .section::<raw::Notices>(&mut map, "notices")
        .and_then(|s| c.notices(s));
    let http = c
        .section::<raw::Http>(&mut map, "http")
        .and_then(|s| c.http(s));
    let api = c
        .section::<raw::Api>(&mut map, "api")
        .and_then(|s| c.api(s, limits.as_ref()));
    let events = c
        .section::<raw::Events>(&mut map, "events")
        .and_then(|s| c.events(s));
    let operator = c
        .section::<raw::Operator>(&mut map, "operator")
        .and_then(|s| c.operator(s));
    let log = c
        .section::<raw::Log>(&mut map, "log")
        .and_then(|s| c.log(s));
    let providers = c.providers(map.remove("providers"));
    if let (Some(schedule), Some(providers)) = (&schedule, &providers) {
        c.idle_lifetimes(schedule, providers);
    }
    let webhooks = c.webhooks(map.remove("webhooks"));
    // Optional: only a development config has one.
    let dev_provider = match map.remove("dev_provider") {
        None => Some(None),
        Some(v) => c
            .deserialize::<raw::DevProvider>("dev_provider", v)
            .and_then(|s| c.dev_provider(s, providers.as_ref()))
            .map(Some),
    };
    for unknown in map.keys() {
        c.problem(
            unknown,
            "unknown section (known: database, encryption, schedule, limits, mail, smtp, notices, http, api, events, webhooks, operator, log, providers, dev_provider)",
        );
    }
    match (
        (database, keyring, schedule, limits, mail, notices),
        (http, api, events, operator, log, providers),
        (webhooks, dev_provider),
    ) {
        (
            (
                Some(database),
                Some(keyring),
                Some(schedule),
                Some(limits),
                Some(mail),
                Some(notices),
            ),
            (Some(http), Some(api), Some(events), Some(operator_email), Some(log), Some(providers)),
            (Some(webhooks), Some(dev_provider)),
        ) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            database,
            keyring: Arc::new(keyring),
            schedule,
            limits,
            mail,
            notices,
            http,
            api,
            events,
            webhooks,
            operator_email,
            log,
            providers,
            dev_provider,
        }),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        }),
    }
}

pub(super) struct Checker<'a> {
    pub(super) problems: Vec<Problem>,
    pub(super) base_dir: &'a Path,
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, key: &str, message: impl Into<String>) {
        let mut message = message.into();
        let var = env_var_for(key);
        if std::env::var_os(&var).is_some() {
            message.push_str(&format!(" (set by environment variable {var})"));
        }
        self.problems.push(Problem {
            key: key.to_owned(),
            message,
        });
    }

    /// Deserializes one section on its own, so that a bad section does not hide the others.
    fn section<T: DeserializeOwned + Default>(
        &mut self,
        map: &mut config::Map<String, config::Value>,
        name: &str,
    ) -> Option<T> {
        match map.remove(name) {
            None => Some(T::default()),
            Some(value) => self.deserialize(name, value),
        }
    }

    pub(super) fn deserialize<T: DeserializeOwned>(
        &mut self,
        prefix: &str,
        value: config::Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner_path = e.path().to_string();
                let key = if inner_path == "." {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{inner_path}")
                };
                let message = match e.inner() {
                    config::ConfigError::Message(m) => m.clone(),
                    other => describe(other),
                };
                self.problem(&key, message);
                None
            }
        }
    }

    fn database(&mut self, s: raw::Database) -> Option<DatabaseConfig> {
        let url = s
            .url
            .unwrap_or_else(|| "sqlite:///var/lib/credwatch/credwatch.db".to_owned());
        let url = if let Some(rest) = url.strip_prefix("sqlite:") {
            let file = rest.strip_prefix("//").unwrap_or(rest);
            if file.is_empty() || file.contains('?') || file.starts_with(":memory:") {
                self.problem(
                    "database.url",
                    "expected sqlite://PATH to a database file, without options (credwatch sets WAL and the busy timeout itself)",
                );
                return None;
            }
            DatabaseUrl::Sqlite(self.base_dir.join(file))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseUrl::Postgres(SecretString::from(url))
        } else {
            self.problem(
                "database.url",
                "expected a sqlite://PATH or postgres://… URL",
            );
            return None;
        };
        let max_connections = s.max_connections.unwrap_or(8);
        if max_connections == 0 {
            self.problem("database.max_connections", "must be at least 1");
            return None;
        }
        Some(DatabaseConfig {
            url,
            max_connections,
        })
    }

    fn encryption(&mut self, s: raw::Encryption) -> Option<Keyring> {
        let Some(key_file) = s.key_file else {
            self.problem("encryption.key_file", "missing: the file holding the 32-byte key that encrypts tokens (see `credwatch key generate`)");
            return None;
        };
        let key_path = self.path("encryption.key_file", &key_file)?;
        let previous: Vec<PathBuf> = s
            .previous_key_files
            .iter()
            .enumerate()
            .filter_map(|(i, p)| self.path(&format!("encryption.previous_key_files[{i}]"), p))
            .collect();
        if s.create_if_missing && !key_path.exists() {
            let created = match key_path.parent() {
                Some(dir) => std::fs::create_dir_all(dir).map_err(|source| {
                    crate::crypto::CryptoError::KeyCreate {
                        path: key_path.clone(),
                        source,
                    }
                }),
                None => Ok(()),
            };
            if let Err(e) = created.and_then(|()| generate_key_file(&key_path).map(drop)) {
                self.problem("encryption.key_file", e.to_string());
                return None;
            }
        }
        match Keyring::from_files(&key_path, &previous) {
            Ok(k) => Some(k),
            Err(e) => {
                self.problem("encryption.key_file", e.to_string());
                None
            }
        }
    }

    fn schedule(&mut self, s: raw::Schedule) -> Option<ScheduleConfig> {
        let sweep = s.sweep.unwrap_or_else(|| "0 * * * * *".to_owned());
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&sweep);
        let sweep = match parsed {
            Ok(_) => Some(sweep),
            Err(e) => {
                self.problem(
                    "schedule.sweep",
                    format!("not a cron expression with six fields (seconds first): {e}"),
                );
                None
            }
        };
        let check_interval = self.duration_at_least(
            "schedule.check_interval",
            s.check_interval.as_deref(),
            "24h",
            Duration::from_secs(60),
            "must be at least 1m",
        );
        let batch_size = match s.batch_size.unwrap_or(200) {
            n @ 1..=10_000 => Some(n),
            _ => {
                self.problem("schedule.batch_size", "must be between 1 and 10000");
                None
            }
        };
        let backoff_max = self.duration_at_least(
            "schedule.backoff_max",
            s.backoff_max.as_deref(),
            "1h",
            Duration::from_secs(60),
            "must be at least 1m (backoff starts at 1m)",
        );
        let broken_recheck = match s.broken_recheck.as_deref().unwrap_or("24h") {
            "off" => Some(None),
            v => match self.duration("schedule.broken_recheck", Some(v), "24h") {
                Some(d) if d < Duration::from_secs(3600) => {
                    self.problem(
                        "schedule.broken_recheck",
                        "must be at least 1h, or \"off\": a broken grant is not to be hammered",
                    );
                    None
                }
                other => other.map(Some),
            },
        };
        let catch_up = self.duration("schedule.catch_up", s.catch_up.as_deref(), "10m");
        let history_retention = self.duration_at_least(
            "schedule.history_retention",
            s.history_retention.as_deref(),
            "7d",
            Duration::from_secs(3600),
            "must be at least 1h",
        );
        Some(ScheduleConfig {
            sweep: sweep?,
            check_interval: check_interval?,
            batch_size: batch_size?,
            backoff_max: backoff_max?,
            broken_recheck: broken_recheck?,
            catch_up: catch_up?,
            history_retention: history_retention?,
        })
    }

    fn limits(&mut self, s: raw::Limits) -> Option<LimitsConfig> {
        let max_concurrent_checks = match s.max_concurrent_checks.unwrap_or(32) {
            n @ 1..=10_000 => Some(n),
            _ => {
                self.problem(
                    "limits.max_concurrent_checks",
                    "must be between 1 and 10000",
                );
                None
            }
        };
        let request_timeout = match self.duration(
            "limits.request_timeout",
            s.request_timeout.as_deref(),
            "30s",
        ) {
            Some(d) if d.is_zero() || d > Duration::from_secs(600) => {
                self.problem("limits.request_timeout", "must be between 1ms and 10m");
                None
            }
            other => other,
        };
        let max_response_bytes = match s.max_response_bytes.unwrap_or(1 << 20) {
            n @ 1024..=67_108_864 => Some(n),
            _ => {
                self.problem(
                    "limits.max_response_bytes",
                    "must be between 1024 and 67108864 (64 MiB)",
                );
                None
            }
        };
        let lease = self.duration("limits.lease", s.lease.as_deref(), "5m");
        // A second to spare: a check claimed with no more than that would never start.
        if let (Some(lease), Some(timeout)) = (lease, request_timeout)
            && let least = super::lease_needed(timeout) + std::time::Duration::from_secs(1)
            && lease < least
        {
            self.problem(
                "limits.lease",
                format!(
                    "must be at least {}: a check makes two requests of up to request_timeout \
                     each, and must finish inside its lease with a margin",
                    humantime::format_duration(least)
                ),
            );
            return None;
        }
        Some(LimitsConfig {
            max_concurrent_checks: max_concurrent_checks?,
            request_timeout: request_timeout?,
            max_response_bytes: max_response_bytes?,
            lease: lease?,
        })
    }

    fn http(&mut self, s: raw::Http) -> Option<HttpConfig> {
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = match listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    "http.listen",
                    "expected an address and port such as 127.0.0.1:8080 or [::]:8080",
                );
                None
            }
        };
        let base = s
            .public_base_url
            .unwrap_or_else(|| "http://127.0.0.1:8080/".to_owned());
        let mut base = self.url("http.public_base_url", &base)?;
        if base.query().is_some() || base.fragment().is_some() {
            self.problem("http.public_base_url", "must not have a query or fragment");
            return None;
        }
        // Links are built by joining relative paths, which needs the trailing slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let max_connections = match s.max_connections.unwrap_or(256) {
            n @ 1..=100_000 => Some(n),
            _ => {
                self.problem("http.max_connections", "must be between 1 and 100000");
                None
            }
        };
        let brand_name = match s.brand_name.map(|b| b.trim().to_owned()) {
            None => Some(None),
            Some(b)
                if !b.is_empty()
                    && b.chars().count() <= 100
                    && crate::domain::is_plain_text(&b) =>
            {
                Some(Some(b))
            }
            Some(_) => {
                self.problem("http.brand_name", "expected 1 to 100 printable characters");
                None
            }
        };
        let support_email = match s.support_email.map(|e| e.parse::<EmailAddress>()) {
            None => Some(None),
            Some(Ok(e)) => Some(Some(e)),
            Some(Err(e)) => {
                self.problem("http.support_email", e.to_string());
                None
            }
        };
        Some(HttpConfig {
            listen: listen?,
            public_base_url: base,
            max_connections: max_connections?,
            metrics: s.metrics,
            brand_name: brand_name?,
            support_email: support_email?,
        })
    }

    fn operator(&mut self, s: raw::Operator) -> Option<Option<EmailAddress>> {
        match s.email.map(|e| e.parse::<EmailAddress>()) {
            None => Some(None),
            Some(Ok(e)) => Some(Some(e)),
            Some(Err(e)) => {
                self.problem("operator.email", e.to_string());
                None
            }
        }
    }

    fn log(&mut self, s: raw::Log) -> Option<LogConfig> {
        let format = match s.format.as_deref().unwrap_or("text") {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => {
                self.problem("log.format", "expected \"text\" or \"json\"");
                None
            }
        };
        let level = s.level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
            self.problem(
                "log.level",
                format!("not a level or filter such as \"info\" or \"credwatch=debug,info\": {e}"),
            );
            return None;
        }
        Some(LogConfig {
            format: format?,
            level,
        })
    }

    pub(super) fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.problem(key, "expected an http:// or https:// URL with a host");
                None
            }
            Err(e) => {
                self.problem(key, format!("not a URL: {e}"));
                None
            }
        }
    }

    pub(super) fn required_url(&mut self, key: &str, value: Option<&str>) -> Option<Url> {
        match value {
            Some(v) => self.url(key, v),
            None => {
                self.problem(key, "missing");
                None
            }
        }
    }

    /// `Some(None)` when absent, `None` when present but bad.
    pub(super) fn optional_url(&mut self, key: &str, value: Option<&str>) -> Option<Option<Url>> {
        match value {
            None => Some(None),
            Some(v) => self.url(key, v).map(Some),
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: &str,
    ) -> Option<Duration> {
        let value = value.unwrap_or(default);
        match humantime::parse_duration(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    key,
                    format!("not a duration such as \"90s\", \"30m\", \"24h\" or \"365d\": {e}"),
                );
                None
            }
        }
    }

    /// `duration`, refused with `why` when shorter than `min`.
    pub(super) fn duration_at_least(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: &str,
        min: Duration,
        why: &str,
    ) -> Option<Duration> {
        match self.duration(key, value, default) {
            Some(d) if d < min => {
                self.problem(key, why);
                None
            }
            other => other,
        }
    }

    /// A config path: `$CREDENTIALS_DIRECTORY/NAME` from systemd, else absolute or relative to the config file.
    pub(super) fn path(&mut self, key: &str, value: &str) -> Option<PathBuf> {
        if let Some(name) = value.strip_prefix(CREDENTIALS_PREFIX) {
            return match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => Some(Path::new(&dir).join(name)),
                None => {
                    self.problem(key, "refers to $CREDENTIALS_DIRECTORY, which is not set (it is set by systemd's LoadCredential=)");
                    None
                }
            };
        }
        if value.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(self.base_dir.join(value))
    }

    /// A secret given inline or as a file; `Some(None)` when neither is set, `None` on a problem.
    pub(super) fn secret(
        &mut self,
        key: &str,
        inline: Option<SecretString>,
        file: Option<&str>,
    ) -> Option<Option<SecretString>> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &file_key,
                    format!("set either {key} or {file_key}, not both"),
                );
                None
            }
            (Some(s), None) => Some(Some(s)),
            (None, None) => Some(None),
            (None, Some(f)) => {
                let path = self.path(&file_key, f)?;
                let read = crate::files::read_capped(&path, crate::files::MAX_SECRET_FILE)
                    .and_then(|b| {
                        String::from_utf8(b).map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
                        })
                    });
                match read {
                    // A trailing newline is an editor's, not part of the secret.
                    Ok(s) => Some(Some(SecretString::from(
                        s.trim_end_matches(['\r', '\n']).to_owned(),
                    ))),
                    Err(e) => {
                        self.problem(&file_key, format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
        }
    }
}
