//! The `[providers.NAME]` tables: endpoints, client credentials, classification rules and limits.

use std::collections::BTreeMap;

use super::validate::Checker;
use super::*;
use crate::classify::{self, ProviderKind};

impl Checker<'_> {
    pub(super) fn providers(
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
            let Some((value, preset)) = self.with_preset(&key, value) else {
                ok = false;
                continue;
            };
            match self
                .deserialize::<raw::Provider>(&key, value)
                .and_then(|p| self.provider(&key, id.clone(), p))
            {
                Some(mut p) => {
                    p.preset = preset;
                    out.insert(id, p);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn provider(&mut self, key: &str, id: ProviderId, p: raw::Provider) -> Option<ProviderConfig> {
        let k = |field: &str| format!("{key}.{field}");
        let auth = self.auth(key, &p);
        if let Some(Some(keyed)) = auth {
            return self.keyed_provider(key, id, p, keyed);
        }
        let (max_concurrent, requests_per_second) = self.provider_limits(key, &p);
        let probe = self.probe_request(key, &p);
        if !p.fields.is_empty() {
            self.problem(
                &k("fields"),
                "only for auth = \"api_key\" or \"basic\": owners of an OAuth provider sign in at the provider",
            );
        }
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
        let mut optional_duration = |field: &str, v: Option<&str>| match v {
            None => Some(None),
            Some(v) => self.duration(&k(field), Some(v), "0s").map(Some),
        };
        let refresh_token_lifetime = optional_duration(
            "refresh_token_lifetime",
            p.refresh_token_lifetime.as_deref(),
        );
        let refresh_token_idle_lifetime = optional_duration(
            "refresh_token_idle_lifetime",
            p.refresh_token_idle_lifetime.as_deref(),
        );
        let access_token_lifetime =
            optional_duration("access_token_lifetime", p.access_token_lifetime.as_deref());
        let token_in = match p.token_in.as_deref() {
            None => Some(KeyPlacement::Header {
                name: "Authorization".into(),
                prefix: "Bearer ".into(),
            }),
            Some(v) => self.placement(&k("token_in"), v),
        };
        let token_request = match p.token_request.as_deref().unwrap_or("form") {
            "form" => Some(TokenRequest::Form),
            "json" => Some(TokenRequest::Json),
            _ => {
                self.problem(&k("token_request"), "expected \"form\" or \"json\"");
                None
            }
        };
        // What oauth2 sets itself: a token parameter of the config must not take its place.
        const SET_BY_US: [&str; 7] = [
            "grant_type",
            "refresh_token",
            "code",
            "code_verifier",
            "redirect_uri",
            "client_id",
            "client_secret",
        ];
        let mut token_params_ok = true;
        for name in p.token_params.keys() {
            if SET_BY_US.contains(&name.as_str()) {
                self.problem(
                    &k(&format!("token_params.{name}")),
                    "set by credwatch itself; a token parameter cannot replace it",
                );
                token_params_ok = false;
            }
        }
        let token_headers = self.fixed_headers(&k("token_headers"), &p.token_headers);
        let kind = match p
            .kind
            .as_deref()
            .unwrap_or("generic")
            .parse::<ProviderKind>()
        {
            Ok(kind) => Some(kind),
            Err(e) => {
                self.problem(&k("kind"), e.to_string());
                None
            }
        };
        let rules = kind.and_then(|kind| match classify::preset(kind) {
            Ok(preset) => {
                // The operator's rules first: they exist to override a preset.
                let mut rules = p.rules;
                rules.extend(preset);
                Some(rules)
            }
            Err(e) => {
                self.problem(&k("kind"), e.to_string());
                None
            }
        });
        let account_from = match p.account_from.as_deref().unwrap_or("id_token") {
            "id_token" => Some(AccountSource::IdToken),
            v => match v.strip_prefix("probe:") {
                Some(pointer)
                    if pointer.starts_with('/')
                        && probe_url.as_ref().is_some_and(Option::is_some) =>
                {
                    Some(AccountSource::Probe(pointer.to_owned()))
                }
                Some(pointer) if pointer.starts_with('/') => {
                    self.problem(&k("account_from"), "\"probe:…\" needs a probe_url");
                    None
                }
                _ => {
                    self.problem(
                        &k("account_from"),
                        "expected \"id_token\" or \"probe:/json/pointer\" (such as \"probe:/id\")",
                    );
                    None
                }
            },
        };
        auth?;
        let oauth = OAuthSettings {
            token_url: token_url?,
            authorize_url: authorize_url?,
            revocation_url: revocation_url?,
            introspection_url: introspection_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            client_auth: client_auth?,
            scopes: p.scopes.map(raw::Scopes::into_vec).unwrap_or_default(),
            rotates_refresh_tokens: p.rotates_refresh_tokens,
            reuse_grace: reuse_grace?,
            refresh_token_lifetime: refresh_token_lifetime?,
            refresh_token_idle_lifetime: refresh_token_idle_lifetime?,
            access_token_lifetime: access_token_lifetime?,
            issues_refresh_tokens: p.issues_refresh_tokens.unwrap_or(true),
            token_in: token_in?,
            authorize_params: p.authorize_params,
            token_params: p.token_params,
            token_request: token_request?,
            token_headers: token_headers?,
        };
        token_params_ok.then_some(())?;
        Some(ProviderConfig {
            display_name: p.display_name.unwrap_or_else(|| id.to_string()),
            id,
            auth: ProviderAuth::OAuth(Box::new(oauth)),
            probe_url: probe_url?,
            probe: probe?,
            kind: kind?,
            account_from: account_from?,
            rules: rules?.into(),
            max_concurrent: max_concurrent?,
            requests_per_second: requests_per_second?,
            fields: Vec::new(),
            preset: None,
        })
    }
}

impl Checker<'_> {
    /// Every check of a connection with a refresh token refreshes it, and a connection is
    /// checked at least every `check_interval`: that must be well inside the time after which
    /// a provider expires an unused refresh token, or grants would die of our own neglect.
    pub(super) fn idle_lifetimes(
        &mut self,
        schedule: &ScheduleConfig,
        providers: &BTreeMap<ProviderId, ProviderConfig>,
    ) {
        for p in providers.values() {
            let Some(idle) = p.oauth().and_then(|o| o.refresh_token_idle_lifetime) else {
                continue;
            };
            if schedule.check_interval > idle / 4 {
                self.problem(
                    "schedule.check_interval",
                    format!(
                        "must be at most a quarter of providers.{}.refresh_token_idle_lifetime ({}): \
                         its refresh tokens expire when unused that long",
                        p.id,
                        humantime::format_duration(idle)
                    ),
                );
            }
        }
    }

    /// `max_concurrent` and `requests_per_second`, checked.
    fn provider_limits(&mut self, key: &str, p: &raw::Provider) -> (Option<u32>, Option<f64>) {
        let k = |field: &str| format!("{key}.{field}");
        let max_concurrent = match p.max_concurrent.unwrap_or(4) {
            n @ 1..=1000 => Some(n),
            _ => {
                self.problem(&k("max_concurrent"), "must be between 1 and 1000");
                None
            }
        };
        let requests_per_second = match p.requests_per_second.unwrap_or(10.0) {
            r if r.is_finite() && (0.01..=100_000.0).contains(&r) => Some(r),
            _ => {
                self.problem(
                    &k("requests_per_second"),
                    "must be a number between 0.01 and 100000",
                );
                None
            }
        };
        (max_concurrent, requests_per_second)
    }

    /// `auth` and, for API keys, `api_key_in`: `Some(None)` for OAuth, whose settings are
    /// read by the caller.
    fn auth(&mut self, key: &str, p: &raw::Provider) -> Option<Option<ProviderAuth>> {
        let k = |field: &str| format!("{key}.{field}");
        let auth = match p.auth.as_deref().unwrap_or("oauth") {
            "oauth" => {
                if p.api_key_in.is_some() {
                    self.problem(&k("api_key_in"), "only for auth = \"api_key\"");
                    return None;
                }
                return Some(None);
            }
            "basic" => ProviderAuth::Basic,
            "api_key" => {
                let placement = p
                    .api_key_in
                    .as_deref()
                    .unwrap_or("header:Authorization:Bearer ");
                ProviderAuth::ApiKey(self.placement(&k("api_key_in"), placement)?)
            }
            _ => {
                self.problem(&k("auth"), "expected \"oauth\", \"api_key\" or \"basic\"");
                return None;
            }
        };
        if p.api_key_in.is_some() && !matches!(auth, ProviderAuth::ApiKey(_)) {
            self.problem(&k("api_key_in"), "only for auth = \"api_key\"");
            return None;
        }
        Some(Some(auth))
    }

    /// A provider whose connections hold an API key or a password: checked by its probe
    /// alone, so the probe is required and the OAuth keys have no place.
    fn keyed_provider(
        &mut self,
        key: &str,
        id: ProviderId,
        p: raw::Provider,
        auth: ProviderAuth,
    ) -> Option<ProviderConfig> {
        let k = |field: &str| format!("{key}.{field}");
        let (max_concurrent, requests_per_second) = self.provider_limits(key, &p);
        let probe = self.probe_request(key, &p);
        let oauth_only = [
            ("token_url", p.token_url.is_some()),
            ("authorize_url", p.authorize_url.is_some()),
            ("revocation_url", p.revocation_url.is_some()),
            ("introspection_url", p.introspection_url.is_some()),
            ("client_id", p.client_id.is_some()),
            ("client_secret", p.client_secret.is_some()),
            ("client_secret_file", p.client_secret_file.is_some()),
            ("client_auth", p.client_auth.is_some()),
            ("scopes", p.scopes.is_some()),
            ("rotates_refresh_tokens", p.rotates_refresh_tokens),
            ("refresh_token_lifetime", p.refresh_token_lifetime.is_some()),
            ("reuse_grace", p.reuse_grace.is_some()),
            (
                "refresh_token_idle_lifetime",
                p.refresh_token_idle_lifetime.is_some(),
            ),
            ("access_token_lifetime", p.access_token_lifetime.is_some()),
            ("issues_refresh_tokens", p.issues_refresh_tokens.is_some()),
            ("token_in", p.token_in.is_some()),
            ("authorize_params", !p.authorize_params.is_empty()),
            ("token_params", !p.token_params.is_empty()),
            ("token_request", p.token_request.is_some()),
            ("token_headers", !p.token_headers.is_empty()),
        ];
        let fields = self.form_fields(key, &auth, p.fields);
        let mut ok = fields.is_some();
        for (field, set) in oauth_only {
            if set {
                self.problem(
                    &k(field),
                    format!(
                        "only for auth = \"oauth\" (this provider's auth is \"{}\")",
                        auth.kind()
                    ),
                );
                ok = false;
            }
        }
        let probe_url = self.required_url(&k("probe_url"), p.probe_url.as_deref())?;
        let account_from = match p.account_from.as_deref() {
            None => Some(None),
            Some(v) => match v.strip_prefix("probe:") {
                Some(pointer) if pointer.starts_with('/') => {
                    Some(Some(AccountSource::Probe(pointer.to_owned())))
                }
                _ => {
                    self.problem(&k("account_from"), "expected \"probe:/json/pointer\" (such as \"probe:/id\"): there is no id_token");
                    None
                }
            },
        };
        let kind = match p
            .kind
            .as_deref()
            .unwrap_or("generic")
            .parse::<ProviderKind>()
        {
            Ok(kind) => Some(kind),
            Err(e) => {
                self.problem(&k("kind"), e.to_string());
                None
            }
        };
        let rules = kind
            .and_then(|kind| classify::preset(kind).ok())
            .map(|preset| {
                let mut rules = p.rules;
                rules.extend(preset);
                rules
            });
        if !ok {
            return None;
        }
        Some(ProviderConfig {
            display_name: p.display_name.unwrap_or_else(|| id.to_string()),
            id,
            auth,
            probe_url: Some(probe_url),
            probe: probe?,
            kind: kind?,
            // The key itself names no account: the operator names it, or the probe does.
            account_from: account_from?.unwrap_or(AccountSource::IdToken),
            rules: rules?.into(),
            max_concurrent: max_concurrent?,
            requests_per_second: requests_per_second?,
            fields: fields?,
            preset: None,
        })
    }

    /// The re-entry form's fields, with the operator's labels and help text.
    fn form_fields(
        &mut self,
        key: &str,
        auth: &ProviderAuth,
        mut given: std::collections::BTreeMap<String, raw::Field>,
    ) -> Option<Vec<FormField>> {
        let known = auth.form_fields();
        let mut ok = true;
        for name in given.keys() {
            if !known.iter().any(|(n, _, _)| n == name) {
                let expected: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
                self.problem(
                    &format!("{key}.fields.{name}"),
                    format!(
                        "not a field of auth = \"{}\" (expected {})",
                        auth.kind(),
                        expected.join(" or ")
                    ),
                );
                ok = false;
            }
        }
        let mut fields = Vec::new();
        for (name, default_label, secret) in known {
            let words = given.remove(*name).unwrap_or_default();
            let k = |part: &str| format!("{key}.fields.{name}.{part}");
            let mut text = |part: &str, value: Option<String>, max: usize| match value {
                Some(v)
                    if v.trim().is_empty()
                        || v.chars().count() > max
                        || !crate::domain::is_plain_text(&v) =>
                {
                    self.problem(
                        &k(part),
                        format!("expected 1 to {max} printable characters"),
                    );
                    ok = false;
                    None
                }
                v => v.map(|v| v.trim().to_owned()),
            };
            let label = text("label", words.label, 100);
            let help = text("help", words.help, 500);
            fields.push(FormField {
                name,
                label: label.unwrap_or_else(|| (*default_label).to_owned()),
                help,
                secret: *secret,
            });
        }
        ok.then_some(fields)
    }
}
