//! The config file as written: one struct per section, unknown keys refused. Values that need
//! checking (URLs, durations, cron, paths) stay strings here and are checked in `validate`, so
//! that every bad value is reported, not just the first.

use secrecy::SecretString;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Encryption {
    pub key_file: Option<String>,
    pub previous_key_files: Vec<String>,
    pub create_if_missing: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    pub sweep: Option<String>,
    pub check_interval: Option<String>,
    pub batch_size: Option<u32>,
    pub backoff_max: Option<String>,
    pub broken_recheck: Option<String>,
    pub catch_up: Option<String>,
    pub history_retention: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_concurrent_checks: Option<u32>,
    pub request_timeout: Option<String>,
    pub max_response_bytes: Option<u64>,
    pub lease: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    pub transport: Option<String>,
    pub from: Option<String>,
    pub dir: Option<String>,
    pub templates_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Notices {
    pub digest_window: Option<String>,
    pub reminders: Option<Vec<String>>,
    pub expiring_soon: Option<String>,
    pub link_lifetime: Option<String>,
    pub connect_link_lifetime: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub max_connections: Option<u32>,
    /// Serve `/metrics` here too, not only on the API's listener.
    pub metrics: bool,
    pub brand_name: Option<String>,
    pub support_email: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    pub listen: Option<String>,
    pub max_connections: Option<u32>,
    pub request_timeout: Option<String>,
    pub max_body_bytes: Option<u64>,
    pub keys: Vec<ApiKey>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKey {
    pub name: Option<String>,
    pub sha256: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Webhook {
    pub name: Option<String>,
    pub url: Option<String>,
    pub secret: Option<SecretString>,
    pub secret_file: Option<String>,
    pub previous_secret: Option<SecretString>,
    pub previous_secret_file: Option<String>,
    pub events: Vec<String>,
    pub max_age: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    pub retention: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Operator {
    pub email: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Provider {
    pub display_name: Option<String>,
    pub auth: Option<String>,
    pub api_key_in: Option<String>,
    pub token_url: Option<String>,
    pub authorize_url: Option<String>,
    pub revocation_url: Option<String>,
    pub introspection_url: Option<String>,
    pub probe_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<String>,
    pub client_auth: Option<String>,
    pub scopes: Option<Scopes>,
    pub rotates_refresh_tokens: bool,
    pub reuse_grace: Option<String>,
    pub refresh_token_lifetime: Option<String>,
    pub refresh_token_idle_lifetime: Option<String>,
    pub access_token_lifetime: Option<String>,
    pub issues_refresh_tokens: Option<bool>,
    pub token_in: Option<String>,
    pub probe_method: Option<String>,
    pub probe_at_instance: bool,
    pub probe_headers: std::collections::BTreeMap<String, String>,
    pub kind: Option<String>,
    pub account_from: Option<String>,
    pub authorize_params: std::collections::BTreeMap<String, String>,
    pub token_params: std::collections::BTreeMap<String, String>,
    pub token_request: Option<String>,
    pub token_headers: std::collections::BTreeMap<String, String>,
    pub rules: Vec<crate::classify::Rule>,
    pub max_concurrent: Option<u32>,
    pub requests_per_second: Option<f64>,
    pub fields: std::collections::BTreeMap<String, Field>,
}

/// A form field's words, as the owner reads them: `[providers.NAME.fields.api_key]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Field {
    pub label: Option<String>,
    pub help: Option<String>,
}

/// Scopes as a TOML list or as one space-separated string (OAuth's own form, and the only one an
/// environment variable can carry).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Scopes {
    List(Vec<String>),
    Text(String),
}

impl Scopes {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Scopes::List(v) => v,
            Scopes::Text(s) => s.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DevProvider {
    pub listen: Option<String>,
    pub provider: Option<String>,
    pub accounts: Option<Vec<String>>,
    pub access_lifetime: Option<String>,
    pub state_file: Option<String>,
}
