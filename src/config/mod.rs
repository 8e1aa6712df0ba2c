//! The one config file: where it is, how it is read, and the checked values the daemon runs on.
//!
//! Layers, later wins: built-in defaults, the TOML file, then `CREDWATCH__SECTION__KEY`
//! environment variables. Relative paths are resolved against the config file's directory;
//! a path starting with `$CREDENTIALS_DIRECTORY/` is read from systemd's credentials directory.

mod api;
mod dev_provider;
mod mail;
mod presets;
mod probe;
mod providers;
pub use presets::PresetUse;
pub use probe::ProbeRequest;
mod raw;
mod validate;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::classify::{ProviderKind, Rule};
use crate::crypto::Keyring;
use crate::domain::{EmailAddress, ProviderId};

pub use api::{ApiConfig, ApiKeyConfig, EventsConfig, api_key_sha256, valid_key_name};
pub use dev_provider::DevProviderConfig;
pub use reqwest::Url;
pub use webhooks::WebhookConfig;

pub const DEFAULT_PATH: &str = "/etc/credwatch/credwatch.toml";
pub const ENV_PREFIX: &str = "CREDWATCH";
const ENV_SEPARATOR: &str = "__";

/// Everything the daemon needs, checked. Cheap to clone; secrets stay wrapped.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub database: DatabaseConfig,
    pub keyring: Arc<Keyring>,
    pub schedule: ScheduleConfig,
    pub limits: LimitsConfig,
    pub mail: MailConfig,
    pub notices: NoticesConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    pub events: EventsConfig,
    pub webhooks: Vec<WebhookConfig>,
    pub operator_email: Option<EmailAddress>,
    pub log: LogConfig,
    pub providers: BTreeMap<ProviderId, ProviderConfig>,
    /// A development OAuth provider the daemon serves (`config/dev.toml` has one).
    pub dev_provider: Option<DevProviderConfig>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: u32,
}

#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// Holds a password more often than not.
    Postgres(SecretString),
}

impl DatabaseUrl {
    /// The same database: compared on the values, since `Debug` hides a PostgreSQL URL.
    pub fn same_as(&self, other: &DatabaseUrl) -> bool {
        use secrecy::ExposeSecret;
        match (self, other) {
            (DatabaseUrl::Sqlite(a), DatabaseUrl::Sqlite(b)) => a == b,
            (DatabaseUrl::Postgres(a), DatabaseUrl::Postgres(b)) => {
                a.expose_secret() == b.expose_secret()
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Six-field cron (seconds first), read by croner with tokio-cron-scheduler's settings.
    pub sweep: String,
    pub check_interval: Duration,
    pub batch_size: u32,
    /// The longest wait between retries of a degraded connection.
    pub backoff_max: Duration,
    /// How often a broken connection is tried again on its own; `None`: only reauthorization heals it.
    pub broken_recheck: Option<Duration>,
    /// Connections found overdue at start are spread over this window, not checked in one burst.
    pub catch_up: Duration,
    /// How long a check's history row is kept (a connection's last one is kept however old).
    pub history_retention: Duration,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Checks in flight at once, across all providers.
    pub max_concurrent_checks: u32,
    /// The whole of one HTTP request, connect to last byte.
    pub request_timeout: Duration,
    /// Reading an answer stops here: a provider cannot make us buffer without bound.
    pub max_response_bytes: u64,
    /// How long a claimed connection stays ours if we die holding it.
    pub lease: Duration,
}

impl LimitsConfig {
    /// How long before its lease ends a worker stops calling providers: room for clocks that
    /// differ between replicas, and for the write that ends the check.
    pub fn lease_margin(&self) -> Duration {
        lease_margin(self.request_timeout)
    }

    /// The shortest lease a check can start in: two requests, each up to the timeout, and the
    /// margin, all inside it.
    pub fn lease_needed(&self) -> Duration {
        lease_needed(self.request_timeout)
    }
}

fn lease_margin(request_timeout: Duration) -> Duration {
    request_timeout.min(Duration::from_secs(5))
}

fn lease_needed(request_timeout: Duration) -> Duration {
    request_timeout * 2 + lease_margin(request_timeout)
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub from: lettre::message::Mailbox,
    pub transport: MailTransport,
    /// Templates here replace the built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
}

/// Which notices go out, and when.
#[derive(Debug, Clone)]
pub struct NoticesConfig {
    /// An owner whose connections break within this window gets one e-mail about all of them.
    pub digest_window: Duration,
    /// Reminders while a connection stays broken, counted from the incident's start.
    pub reminders: Vec<Duration>,
    /// Warn an owner this long before a refresh token's known absolute end.
    pub expiring_soon: Duration,
    /// How long a reauthorize link works (unless the incident ends first).
    pub link_lifetime: Duration,
    /// How long a connect link (an invitation to connect a new data source) works.
    pub connect_link_lifetime: Duration,
}

#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Each message written as an .eml file into this directory.
    File(PathBuf),
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, SecretString)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    /// Plain text: only for a relay on the same host.
    None,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub public_base_url: Url,
    /// Open client connections at most; more wait in the kernel's queue.
    pub max_connections: u32,
    /// `/metrics` answers here too (it always does on the API's listener).
    pub metrics: bool,
    /// Who the owner pages speak for (the platform's name), and where owners can write.
    pub brand_name: Option<String>,
    pub support_email: Option<EmailAddress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: ProviderId,
    pub display_name: String,
    /// How its connections authenticate, and for OAuth everything refreshing and signing in
    /// need.
    pub auth: ProviderAuth,
    pub probe_url: Option<Url>,
    pub probe: ProbeRequest,
    pub kind: ProviderKind,
    /// Where a new grant says which account it belongs to, compared at reauthorization.
    pub account_from: AccountSource,
    /// Tried in order: the operator's own rules, then the preset of `kind`, then the generic ones.
    pub rules: Arc<[Rule]>,
    /// Checks of this provider in flight at once.
    pub max_concurrent: u32,
    pub requests_per_second: f64,
    /// What the owner types on the re-entry form (none for OAuth).
    pub fields: Vec<FormField>,
    /// The catalog preset it took, and which keys came from it.
    pub preset: Option<PresetUse>,
}

/// One field of the re-entry form: its name in the posted form and in the API's
/// `credentials`, and the words the owner reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FormField {
    pub name: &'static str,
    pub label: String,
    pub help: Option<String>,
    /// Typed into a password input, never shown back.
    pub secret: bool,
}

impl ProviderConfig {
    /// The OAuth side of an OAuth provider; none for keys and passwords.
    pub fn oauth(&self) -> Option<&OAuthSettings> {
        match &self.auth {
            ProviderAuth::OAuth(o) => Some(o),
            _ => None,
        }
    }
}

/// An OAuth provider's endpoints, our client at it, and how its grants behave.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub token_url: Url,
    pub authorize_url: Url,
    pub revocation_url: Option<Url>,
    pub introspection_url: Option<Url>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub rotates_refresh_tokens: bool,
    pub reuse_grace: Duration,
    /// The absolute end of a refresh token, which refreshing does not extend.
    pub refresh_token_lifetime: Option<Duration>,
    /// A refresh token left unused this long expires: checks must refresh well inside it.
    pub refresh_token_idle_lifetime: Option<Duration>,
    /// How long an access token lives when the token response does not say.
    pub access_token_lifetime: Option<Duration>,
    /// False for providers whose grants have no refresh token (long-lived access tokens).
    pub issues_refresh_tokens: bool,
    /// Where the probe puts the access token (a Bearer unless the API wants its own header).
    pub token_in: KeyPlacement,
    /// Extra query parameters of the authorization request (`prompt = "consent"`, Google's
    /// `access_type = "offline"`), so that reauthorizing returns a refresh token.
    pub authorize_params: BTreeMap<String, String>,
    /// Extra parameters of every token request (Shopify's `expiring = "1"`).
    pub token_params: BTreeMap<String, String>,
    /// How the token request's parameters are sent: a form (RFC 6749) or a JSON object.
    pub token_request: TokenRequest,
    /// Fixed headers of every token request (Notion's `Notion-Version`).
    pub token_headers: reqwest::header::HeaderMap,
}

/// The body of a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRequest {
    /// `application/x-www-form-urlencoded`, as RFC 6749 says.
    Form,
    /// A JSON object of the same parameters (Notion, Zendesk).
    Json,
}

/// What a provider's connections hold, and how the probe presents it.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// Access and refresh tokens, refreshed at the token endpoint; the probe sends a Bearer.
    OAuth(Box<OAuthSettings>),
    /// An API key, checked by the probe alone.
    ApiKey(KeyPlacement),
    /// A user name and password (HTTP Basic), checked by the probe alone.
    Basic,
}

impl ProviderAuth {
    /// The fields an owner fills in, with their default labels.
    pub fn form_fields(&self) -> &'static [(&'static str, &'static str, bool)] {
        match self {
            ProviderAuth::OAuth(_) => &[],
            ProviderAuth::ApiKey(_) => &[("api_key", "API key", true)],
            ProviderAuth::Basic => &[
                ("username", "User name", false),
                ("password", "Password", true),
            ],
        }
    }

    pub fn is_oauth(&self) -> bool {
        matches!(self, ProviderAuth::OAuth(_))
    }

    /// The stored credential's kind, as the `credential_kind` column holds it.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderAuth::OAuth(_) => "oauth",
            ProviderAuth::ApiKey(_) => "api_key",
            ProviderAuth::Basic => "basic",
        }
    }
}

/// Where an API key goes in the probe's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    /// A header, the key after `prefix` ("Authorization" with "Bearer ", or "X-Api-Key").
    Header { name: String, prefix: String },
    /// A query parameter.
    Query { name: String },
}

/// Where the account of a grant is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSource {
    /// The id_token's `sub`, or its `email` when the connection was stored by e-mail.
    IdToken,
    /// A field of the probe's JSON answer, as a JSON pointer (`/id`, `/user/email`).
    Probe(String),
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
    /// A public client: client_id only.
    None,
}

/// One thing wrong with the config: which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.path.display(), p.key, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads, layers and checks the config; either every value is good or every problem is listed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, None)
    }

    /// `load`, with `vars` standing in for the process environment when given.
    fn load_with(
        path: &Path,
        vars: Option<config::Map<String, String>>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.into(),
            source,
        })?;
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .source(vars)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            // Values stay text until a key's own type reads them: parsing every variable as a
            // number would turn a client id "0123" into 123 and a secret "1e3" into 1000.
            .try_parsing(false);
        let layered = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(env)
            .build()
            .and_then(|c| c.try_deserialize::<config::Map<String, config::Value>>())
            .map_err(|e| ConfigError::Syntax {
                path: path.into(),
                message: describe(&e),
            })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        validate::validate(layered, path, &base_dir)
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&ProviderConfig> {
        self.providers.get(id)
    }
}

/// The environment variable that overrides a key, e.g. `CREDWATCH__SMTP__HOST` for `smtp.host`.
pub fn env_var_for(key: &str) -> String {
    let mut name = String::from(ENV_PREFIX);
    for part in key.split('.') {
        name.push_str(ENV_SEPARATOR);
        name.push_str(&part.to_uppercase());
    }
    name
}

/// A TOML parser's message without the quoted source line (`3 | client_secret = "...`): that
/// line may hold a secret. Where and what stay.
fn without_snippet(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join(": ")
}

/// A config-crate error in words, without echoing the value: the value may be a secret.
fn describe(e: &config::ConfigError) -> String {
    use config::ConfigError as E;
    match e {
        E::Type { expected, .. } => format!("expected {expected}, found a value of another type"),
        E::At { error, .. } => describe(error),
        E::FileParse { cause, .. } => without_snippet(&cause.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("k.key");
        std::fs::write(&key, "0".repeat(64)).expect("key");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("config");
        (dir, path)
    }

    const BASE: &str = "[encryption]\nkey_file = \"k.key\"\n\
        [providers.acme]\ntoken_url = \"http://127.0.0.1/t\"\n\
        authorize_url = \"http://127.0.0.1/a\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";

    #[test]
    fn environment_values_stay_text_until_a_key_reads_them() {
        let (_dir, path) = config(BASE);
        let vars = [
            ("CREDWATCH__PROVIDERS__ACME__CLIENT_ID", "0123"),
            ("CREDWATCH__PROVIDERS__ACME__CLIENT_SECRET", "1e3"),
            ("CREDWATCH__LIMITS__MAX_CONCURRENT_CHECKS", "7"),
        ];
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let c = Config::load_with(&path, Some(vars.collect())).expect("valid");
        let acme = c
            .provider(&"acme".parse().unwrap())
            .and_then(ProviderConfig::oauth)
            .expect("acme");
        assert_eq!(acme.client_id, "0123");
        use secrecy::ExposeSecret;
        let secret = acme.client_secret.as_ref().expect("secret");
        assert_eq!(secret.expose_secret(), "1e3");
        assert_eq!(c.limits.max_concurrent_checks, 7);
    }

    #[test]
    fn a_lease_no_check_could_start_in_is_refused() {
        // Two requests of 2 s and a 2 s margin leave no time to start one in a 6 s lease:
        // every check would be given back unused, for ever.
        let (_dir, path) = config(&format!(
            "{BASE}[limits]\nrequest_timeout = \"2s\"\nlease = \"6s\"\n"
        ));
        let e = Config::load_with(&path, Some(Default::default())).unwrap_err();
        assert!(
            e.to_string().contains("limits.lease: must be at least 7s"),
            "{e}"
        );
        let (_dir, path) = config(&format!(
            "{BASE}[limits]\nrequest_timeout = \"2s\"\nlease = \"7s\"\n"
        ));
        assert!(Config::load_with(&path, Some(Default::default())).is_ok());
    }

    #[test]
    fn api_keys_and_listener_problems_are_each_named() {
        let hash = "ab".repeat(32);
        let (_dir, path) = config(&format!(
            "{BASE}[api]\nlisten = \"localhost\"\nrequest_timeout = \"5s\"\n\
             [[api.keys]]\nname = \"ok\"\nsha256 = \"{hash}\"\n\
             [[api.keys]]\nname = \"ok\"\nsha256 = \"{hash}\"\n\
             [[api.keys]]\nname = \"with space\"\nsha256 = \"{hash}\"\n\
             [[api.keys]]\nname = \"short\"\nsha256 = \"abc\"\n\
             [[api.keys]]\nname = \"neither\"\n"
        ));
        let e = Config::load_with(&path, Some(Default::default()))
            .unwrap_err()
            .to_string();
        for expected in [
            "api.listen: expected an address and port",
            "api.request_timeout: must be at least 1m 5s",
            "api.keys[1].name: \"ok\" is named twice",
            "api.keys[2].name: expected 1 to 64 letters",
            "api.keys[3].sha256: expected 64 hex digits",
            "api.keys[4]: set either sha256 or key_file",
        ] {
            assert!(e.contains(expected), "{expected} not in:\n{e}");
        }
        let (dir, path) = config(&format!(
            "{BASE}[[api.keys]]\nname = \"f\"\nkey_file = \"k.txt\"\n"
        ));
        std::fs::write(dir.path().join("k.txt"), "cwk_from-a-file\n").unwrap();
        let c = Config::load_with(&path, Some(Default::default())).expect("valid");
        assert_eq!(c.api.keys[0].sha256, api_key_sha256("cwk_from-a-file"));
        assert_eq!(c.api.listen.to_string(), "127.0.0.1:8081");
    }

    #[test]
    fn a_provider_of_keys_needs_a_probe_and_takes_no_oauth_settings() {
        let (_dir, path) = config(
            "[encryption]\nkey_file = \"k.key\"\n\
             [providers.keyed]\nauth = \"api_key\"\napi_key_in = \"cookie:x\"\n\
             [providers.basic]\nauth = \"basic\"\ntoken_url = \"http://127.0.0.1/t\"\n\
             [providers.odd]\nauth = \"magic\"\n\
             [providers.pw]\nauth = \"basic\"\nprobe_url = \"http://127.0.0.1/me\"\n\
             fields.token = { label = \"Token\" }\nfields.password = { help = \"\\u0007\" }\n",
        );
        let e = Config::load_with(&path, Some(Default::default()))
            .unwrap_err()
            .to_string();
        for expected in [
            "providers.keyed.api_key_in: expected \"header:NAME\"",
            "providers.basic.token_url: only for auth = \"oauth\"",
            "providers.basic.probe_url: missing",
            "providers.odd.auth: expected \"oauth\", \"api_key\" or \"basic\"",
            "providers.pw.fields.token: not a field of auth = \"basic\" (expected username or password)",
            "providers.pw.fields.password.help: expected 1 to 500 printable characters",
        ] {
            assert!(e.contains(expected), "{expected} not in:\n{e}");
        }
        let (_dir, path) = config(
            "[encryption]\nkey_file = \"k.key\"\n\
             [providers.keyed]\nauth = \"api_key\"\napi_key_in = \"query:key\"\n\
             probe_url = \"http://127.0.0.1/me\"\n\
             fields.api_key = { label = \"Token\", help = \"Under Settings.\" }\n",
        );
        let c = Config::load_with(&path, Some(Default::default())).expect("valid");
        let keyed = c.provider(&"keyed".parse().unwrap()).expect("keyed");
        assert!(matches!(
            &keyed.auth,
            ProviderAuth::ApiKey(KeyPlacement::Query { name }) if name == "key"
        ));
        let field = &keyed.fields[0];
        assert_eq!(
            (
                field.name,
                field.label.as_str(),
                field.help.as_deref(),
                field.secret
            ),
            ("api_key", "Token", Some("Under Settings."), true)
        );
    }

    #[test]
    fn a_syntax_error_says_where_without_quoting_the_line() {
        let (_dir, path) = config(&format!("{BASE}password = \"hunter2-secret\n"));
        let e = Config::load_with(&path, Some(Default::default())).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("at line 8"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
