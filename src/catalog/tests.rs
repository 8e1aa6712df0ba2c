//! Every preset reads, cites its sources, builds a provider the config accepts, and classifies
//! every error answer its provider documents as documented.

use super::*;
use crate::classify::{Outcome, Response, classify};
use crate::config::{Config, ProviderConfig};

/// A config with `[providers.ID] preset = "ID"`, a client id and secret, placeholders that have
/// no default, and `extra` lines in the provider's table.
fn load(p: &Preset, extra: &str) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("k.key"), "0".repeat(64)).expect("key");
    let placeholders: String = p
        .placeholders
        .iter()
        .filter(|(_, about)| about.default.is_none())
        .map(|(name, _)| format!("{name} = \"example\"\n"))
        .collect();
    let text = format!(
        "[encryption]\nkey_file = \"k.key\"\n[providers.{id}]\npreset = \"{id}\"\n\
         client_id = \"id-123\"\nclient_secret = \"secret-456\"\n{placeholders}{extra}",
        id = p.id
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("config");
    let config = Config::load(&path).map_err(|e| e.to_string());
    (dir, config)
}

fn provider<'c>(config: &'c Config, p: &Preset) -> &'c ProviderConfig {
    config
        .provider(&p.id.parse().expect("id"))
        .expect("the provider")
}

fn every() -> Vec<Preset> {
    names()
        .into_iter()
        .map(|n| get(n).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn the_catalog_has_the_providers_data_platforms_connect_to() {
    let names = names();
    for expected in [
        "google",
        "microsoft",
        "salesforce",
        "hubspot",
        "xero",
        "intuit",
        "linkedin",
        "meta",
        "slack",
        "atlassian",
        "zoom",
        "github",
        "github_app",
        "shopify",
        "pipedrive",
        "zendesk",
        "mailchimp",
        "dropbox",
        "box",
        "asana",
        "notion",
        "stripe",
        "snowflake",
        "intercom",
        "x",
    ] {
        assert!(names.contains(&expected), "no preset {expected}");
    }
}

#[test]
fn every_setting_rule_and_example_cites_the_providers_documentation_or_says_it_cannot() {
    let mut missing = Vec::new();
    for p in every() {
        // `kind` names credwatch's own rule set and `max_concurrent` is how many refreshes we
        // keep in flight: our choices, not facts about the provider.
        for key in p
            .settings
            .keys()
            .filter(|k| *k != "kind" && *k != "max_concurrent")
        {
            if !p.sources.contains_key(key) && !p.unconfirmed.contains_key(key) {
                missing.push(format!("{}.{key}", p.id));
            }
        }
        for (i, rule) in p.rules.iter().enumerate() {
            if !rule
                .get("source")
                .and_then(|s| s.as_str())
                .is_some_and(|s| s.starts_with("https://"))
            {
                missing.push(format!("{}.rules[{i}]", p.id));
            }
        }
        for (i, e) in p.examples.iter().enumerate() {
            if !e.source.starts_with("https://") {
                missing.push(format!("{}.examples[{i}]", p.id));
            }
        }
        assert!(p.docs.starts_with("https://"), "{}: docs", p.id);
    }
    assert!(
        missing.is_empty(),
        "without a source or a note: {missing:?}"
    );
}

#[test]
fn every_preset_with_a_client_id_and_secret_is_a_complete_provider() {
    for p in every() {
        let (_dir, config) = load(&p, "");
        let config = config.unwrap_or_else(|e| panic!("preset {}: {e}", p.id));
        let provider = provider(&config, &p);
        let oauth = provider.oauth().expect("an OAuth provider");
        assert_eq!(oauth.client_id, "id-123");
        assert!(
            provider.probe_url.is_some() || p.unconfirmed.contains_key("probe_url"),
            "{}: a probe, or why there is none",
            p.id
        );
        let used = provider.preset.as_ref().expect("the preset is reported");
        assert!(
            used.keys.iter().any(|k| k == "token_url"),
            "{}: {:?}",
            p.id,
            used.keys
        );
        for url in [&oauth.token_url, &oauth.authorize_url] {
            assert_eq!(url.scheme(), "https", "{}: {url}", p.id);
            assert!(!url.as_str().contains('{'), "{}: unfilled {url}", p.id);
        }
    }
}

#[test]
fn every_documented_error_classifies_as_the_provider_documents_it() {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    let mut wrong = Vec::new();
    let mut count = 0;
    for p in every() {
        let (_dir, config) = load(&p, "");
        let config = config.unwrap_or_else(|e| panic!("preset {}: {e}", p.id));
        let rules = &provider(&config, &p).rules;
        for e in &p.examples {
            count += 1;
            let outcome = Outcome::Response(Response {
                status: e.status,
                body: e.body.as_bytes().to_vec(),
                www_authenticate: e.www_authenticate.clone(),
                ..Response::default()
            });
            let got = classify(e.phase, &outcome, rules, now);
            if got.category != e.category {
                wrong.push(format!(
                    "{} {} {} {}: expected {}, got {} ({})",
                    p.id, e.phase, e.status, e.body, e.category, got.category, got.detail
                ));
            }
        }
    }
    assert!(count >= 20, "only {count} documented examples");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_key_the_config_sets_wins_over_the_preset_and_is_not_reported_as_the_presets() {
    let google = get("google").expect("google");
    let (_dir, config) = load(
        &google,
        "token_url = \"https://127.0.0.1/token\"\nauthorize_params = { hd = \"example.com\" }\n\
         rules = [{ phase = \"probe\", status = 418, category = \"revoked\" }]\n",
    );
    let config = config.expect("valid");
    let p = provider(&config, &google);
    let oauth = p.oauth().expect("oauth");
    assert_eq!(oauth.token_url.as_str(), "https://127.0.0.1/token");
    assert_eq!(
        oauth.authorize_params.get("hd").map(String::as_str),
        Some("example.com")
    );
    assert_eq!(
        oauth
            .authorize_params
            .get("access_type")
            .map(String::as_str),
        Some("offline"),
        "the preset's other parameters stay"
    );
    assert_eq!(
        p.rules[0].status,
        Some(crate::classify::StatusMatch::Exact(418)),
        "ours first"
    );
    assert!(p.rules.len() > 1, "then the preset's");
    let used = p.preset.as_ref().expect("preset");
    assert!(
        !used.keys.iter().any(|k| k == "token_url"),
        "{:?}",
        used.keys
    );
    assert!(
        used.keys.iter().any(|k| k == "authorize_url"),
        "{:?}",
        used.keys
    );
}

#[test]
fn an_unknown_preset_or_a_missing_placeholder_names_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("k.key"), "0".repeat(64)).expect("key");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[encryption]\nkey_file = \"k.key\"\n\
         [providers.a]\npreset = \"nope\"\n\
         [providers.b]\npreset = \"zendesk\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         [providers.c]\npreset = \"zendesk\"\nsubdomain = \"a/b\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .expect("config");
    let e = Config::load(&path).expect_err("invalid").to_string();
    for expected in [
        "providers.a.preset: no preset \"nope\"",
        "providers.b.subdomain: missing: preset zendesk needs it",
        "providers.c.subdomain: expected letters, digits",
    ] {
        assert!(e.contains(expected), "{expected} not in:\n{e}");
    }
}

#[test]
fn a_check_interval_longer_than_a_quarter_of_an_idle_lifetime_is_refused() {
    let google = get("google").expect("google");
    let idle = google
        .settings
        .get("refresh_token_idle_lifetime")
        .and_then(|v| v.as_str())
        .expect("google expires unused refresh tokens");
    let (_dir, config) = load(
        &google,
        &format!("refresh_token_idle_lifetime = \"{idle}\"\n"),
    );
    config.expect("the default interval is well inside");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("k.key"), "0".repeat(64)).expect("key");
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[encryption]\nkey_file = \"k.key\"\n[schedule]\ncheck_interval = \"100d\"\n\
         [providers.google]\npreset = \"google\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .expect("config");
    let e = Config::load(&path).expect_err("invalid").to_string();
    assert!(
        e.contains("schedule.check_interval: must be at most a quarter of providers.google.refresh_token_idle_lifetime"),
        "{e}"
    );
}

#[test]
fn a_probe_goes_to_the_grants_own_api_origin_where_the_preset_says_so() {
    let salesforce = get("salesforce").expect("salesforce");
    let (_dir, config) = load(&salesforce, "");
    let config = config.expect("valid");
    let p = provider(&config, &salesforce);
    let at = |instance: Option<&str>| p.probe_url_for(instance).map(String::from);
    assert_eq!(
        at(Some("https://acme.my.salesforce.com")).as_deref(),
        Some("https://acme.my.salesforce.com/services/oauth2/userinfo")
    );
    assert_eq!(
        at(None).as_deref(),
        Some("https://login.salesforce.com/services/oauth2/userinfo")
    );
    assert_eq!(
        at(Some("http://evil.example")).as_deref(),
        Some("https://login.salesforce.com/services/oauth2/userinfo"),
        "only an https origin"
    );
    let google = get("google").expect("google");
    let (_dir, config) = load(&google, "");
    let config = config.expect("valid");
    let g = provider(&config, &google);
    assert_eq!(
        g.probe_url_for(Some("https://elsewhere.example")),
        g.probe_url.clone(),
        "only presets that say so"
    );
}
