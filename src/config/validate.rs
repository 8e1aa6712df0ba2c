//! From the layered raw values to a checked `Config`, collecting every problem on the way.

use std::collections::BTreeMap;
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
    let smtp = c.section::<raw::Smtp>(&mut map, "smtp");
    let mail = c
        .section::<raw::Mail>(&mut map, "mail")
        .zip(smtp)
        .and_then(|(m, s)| c.mail(m, s));
    let http = c
        .section::<raw::Http>(&mut map, "http")
        .and_then(|s| c.http(s));
    let operator = c
        .section::<raw::Operator>(&mut map, "operator")
        .and_then(|s| c.operator(s));
    let log = c
        .section::<raw::Log>(&mut map, "log")
        .and_then(|s| c.log(s));
    let providers = c.providers(map.remove("providers"));
    for unknown in map.keys() {
        c.problem(
            unknown,
            "unknown section (known: database, encryption, schedule, mail, smtp, http, operator, log, providers)",
        );
    }
    match (
        database, keyring, schedule, mail, http, operator, log, providers,
    ) {
        (
            Some(database),
            Some(keyring),
            Some(schedule),
            Some(mail),
            Some(http),
            Some(operator_email),
            Some(log),
            Some(providers),
        ) if c.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            database,
            keyring: Arc::new(keyring),
            schedule,
            mail,
            http,
            operator_email,
            log,
            providers,
        }),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        }),
    }
}

struct Checker<'a> {
    problems: Vec<Problem>,
    base_dir: &'a Path,
}

impl Checker<'_> {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
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

    fn deserialize<T: DeserializeOwned>(
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
        let check_interval = match self.duration(
            "schedule.check_interval",
            s.check_interval.as_deref(),
            "24h",
        ) {
            Some(d) if d < Duration::from_secs(60) => {
                self.problem("schedule.check_interval", "must be at least 1m");
                None
            }
            other => other,
        };
        let batch_size = match s.batch_size.unwrap_or(200) {
            n @ 1..=10_000 => Some(n),
            _ => {
                self.problem("schedule.batch_size", "must be between 1 and 10000");
                None
            }
        };
        Some(ScheduleConfig {
            sweep: sweep?,
            check_interval: check_interval?,
            batch_size: batch_size?,
        })
    }

    fn mail(&mut self, m: raw::Mail, s: raw::Smtp) -> Option<MailConfig> {
        let from = m
            .from
            .unwrap_or_else(|| "credwatch <credwatch@localhost>".to_owned());
        let from = match from.parse::<lettre::message::Mailbox>() {
            Ok(f) => Some(f),
            Err(e) => {
                self.problem(
                    "mail.from",
                    format!("not an e-mail address or `Name <address>`: {e}"),
                );
                None
            }
        };
        let transport = match m.transport.as_deref().unwrap_or("file") {
            "file" => {
                let dir = m
                    .dir
                    .unwrap_or_else(|| "/var/lib/credwatch/mail".to_owned());
                self.path("mail.dir", &dir).map(MailTransport::File)
            }
            "smtp" => self.smtp(s).map(MailTransport::Smtp),
            _ => {
                self.problem("mail.transport", "expected \"file\" or \"smtp\"");
                None
            }
        };
        Some(MailConfig {
            from: from?,
            transport: transport?,
        })
    }

    fn smtp(&mut self, s: raw::Smtp) -> Option<SmtpConfig> {
        let tls = match s.tls.as_deref().unwrap_or("starttls") {
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" => Some(SmtpTls::Implicit),
            "none" => Some(SmtpTls::None),
            _ => {
                self.problem(
                    "smtp.tls",
                    "expected \"starttls\", \"implicit\" or \"none\"",
                );
                None
            }
        };
        let host = s.host.filter(|h| !h.trim().is_empty());
        if host.is_none() {
            self.problem("smtp.host", "missing: mail.transport is \"smtp\"");
        }
        let password = self.secret("smtp.password", s.password, s.password_file.as_deref());
        let credentials = match (s.username, password) {
            (Some(user), Some(Some(pass))) => Some(Some((user, pass))),
            (None, Some(None)) => Some(None),
            (Some(_), Some(None)) => {
                self.problem("smtp.password", "missing: smtp.username is set");
                None
            }
            (None, Some(Some(_))) => {
                self.problem("smtp.username", "missing: a password is set");
                None
            }
            (_, None) => None,
        };
        let timeout = self.duration("smtp.timeout", s.timeout.as_deref(), "30s");
        let tls = tls?;
        let port = s.port.unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        });
        Some(SmtpConfig {
            host: host?,
            port,
            tls,
            credentials: credentials?,
            timeout: timeout?,
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
        Some(HttpConfig {
            listen: listen?,
            public_base_url: base,
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

    fn providers(
        &mut self,
        value: Option<config::Value>,
    ) -> Option<BTreeMap<ProviderId, ProviderConfig>> {
        let Some(value) = value else {
            return Some(BTreeMap::new());
        };
        let tables: BTreeMap<String, config::Value> = self.deserialize("providers", value)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (name, value) in tables {
            let key = format!("providers.{name}");
            let id = match name.parse::<ProviderId>() {
                Ok(id) => id,
                Err(e) => {
                    self.problem(&key, e.to_string());
                    ok = false;
                    continue;
                }
            };
            match self
                .deserialize::<raw::Provider>(&key, value)
                .and_then(|p| self.provider(&key, id.clone(), p))
            {
                Some(p) => {
                    out.insert(id, p);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn provider(&mut self, key: &str, id: ProviderId, p: raw::Provider) -> Option<ProviderConfig> {
        let k = |field: &str| format!("{key}.{field}");
        let token_url = self.required_url(&k("token_url"), p.token_url.as_deref());
        let authorize_url = self.required_url(&k("authorize_url"), p.authorize_url.as_deref());
        let revocation_url = self.optional_url(&k("revocation_url"), p.revocation_url.as_deref());
        let introspection_url =
            self.optional_url(&k("introspection_url"), p.introspection_url.as_deref());
        let probe_url = self.optional_url(&k("probe_url"), p.probe_url.as_deref());
        let client_id = p.client_id.filter(|c| !c.trim().is_empty());
        if client_id.is_none() {
            self.problem(&k("client_id"), "missing");
        }
        let client_secret = self.secret(
            &k("client_secret"),
            p.client_secret,
            p.client_secret_file.as_deref(),
        );
        let client_auth = match p.client_auth.as_deref().unwrap_or("basic") {
            "basic" => Some(ClientAuth::Basic),
            "post" => Some(ClientAuth::Post),
            "none" => Some(ClientAuth::None),
            _ => {
                self.problem(
                    &k("client_auth"),
                    "expected \"basic\", \"post\" or \"none\"",
                );
                None
            }
        };
        if let (Some(auth), Some(None)) = (client_auth, &client_secret)
            && auth != ClientAuth::None
        {
            self.problem(
                &k("client_secret"),
                "missing: client_auth needs a secret (set client_secret, client_secret_file, or client_auth = \"none\")",
            );
            return None;
        }
        let reuse_grace = self.duration(&k("reuse_grace"), p.reuse_grace.as_deref(), "0s");
        let refresh_token_lifetime = match p.refresh_token_lifetime.as_deref() {
            None => Some(None),
            Some(v) => self
                .duration(&k("refresh_token_lifetime"), Some(v), "0s")
                .map(Some),
        };
        Some(ProviderConfig {
            display_name: p.display_name.unwrap_or_else(|| id.to_string()),
            id,
            token_url: token_url?,
            authorize_url: authorize_url?,
            revocation_url: revocation_url?,
            introspection_url: introspection_url?,
            probe_url: probe_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            client_auth: client_auth?,
            scopes: p.scopes.map(raw::Scopes::into_vec).unwrap_or_default(),
            rotates_refresh_tokens: p.rotates_refresh_tokens,
            reuse_grace: reuse_grace?,
            refresh_token_lifetime: refresh_token_lifetime?,
        })
    }

    fn url(&mut self, key: &str, value: &str) -> Option<Url> {
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

    fn required_url(&mut self, key: &str, value: Option<&str>) -> Option<Url> {
        match value {
            Some(v) => self.url(key, v),
            None => {
                self.problem(key, "missing");
                None
            }
        }
    }

    /// `Some(None)` when absent, `None` when present but bad.
    fn optional_url(&mut self, key: &str, value: Option<&str>) -> Option<Option<Url>> {
        match value {
            None => Some(None),
            Some(v) => self.url(key, v).map(Some),
        }
    }

    fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Option<Duration> {
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

    /// A config path: `$CREDENTIALS_DIRECTORY/NAME` from systemd, else absolute or relative to the config file.
    fn path(&mut self, key: &str, value: &str) -> Option<PathBuf> {
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
    fn secret(
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
                match std::fs::read_to_string(&path) {
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
