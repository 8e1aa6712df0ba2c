//! The providers credwatch knows: one reviewed TOML file per provider, compiled in. A preset
//! holds what an operator would otherwise type into `[providers.NAME]` (endpoints, client
//! authentication, rotation, lifetimes, the probe, where the account is read, classification
//! rules and limits), each value with the provider's documentation page that states it, and
//! what that documentation does not confirm marked as such. `[providers.NAME] preset = "ID"`
//! takes one; every key can still be set in the config, which wins.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Every preset, by id, as its file is written.
const FILES: &[(&str, &str)] = &[
    ("asana", include_str!("asana.toml")),
    ("atlassian", include_str!("atlassian.toml")),
    ("box", include_str!("box.toml")),
    ("dropbox", include_str!("dropbox.toml")),
    ("github", include_str!("github.toml")),
    ("github_app", include_str!("github_app.toml")),
    ("google", include_str!("google.toml")),
    ("hubspot", include_str!("hubspot.toml")),
    ("intercom", include_str!("intercom.toml")),
    ("intuit", include_str!("intuit.toml")),
    ("linkedin", include_str!("linkedin.toml")),
    ("mailchimp", include_str!("mailchimp.toml")),
    ("meta", include_str!("meta.toml")),
    ("microsoft", include_str!("microsoft.toml")),
    ("notion", include_str!("notion.toml")),
    ("pipedrive", include_str!("pipedrive.toml")),
    ("salesforce", include_str!("salesforce.toml")),
    ("shopify", include_str!("shopify.toml")),
    ("slack", include_str!("slack.toml")),
    ("snowflake", include_str!("snowflake.toml")),
    ("stripe", include_str!("stripe.toml")),
    ("x", include_str!("x.toml")),
    ("xero", include_str!("xero.toml")),
    ("zendesk", include_str!("zendesk.toml")),
    ("zoom", include_str!("zoom.toml")),
];

/// A value a preset leaves to the operator (`{tenant}` in its URLs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placeholder {
    pub help: String,
    #[serde(default)]
    pub default: Option<String>,
}

/// An error answer as the provider documents it, and what it must classify to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub phase: crate::domain::Phase,
    pub status: u16,
    pub body: String,
    pub category: crate::domain::Category,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
    /// A `WWW-Authenticate` header sent with it, when the documentation shows one.
    #[serde(default)]
    pub www_authenticate: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub id: String,
    pub display_name: String,
    /// The provider's main OAuth documentation page.
    pub docs: String,
    /// Keys as a `[providers.NAME]` table takes them.
    #[serde(default)]
    pub settings: toml::Table,
    #[serde(default)]
    pub placeholders: BTreeMap<String, Placeholder>,
    /// Key → the documentation page that states it.
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Key → what the provider's documentation does not confirm, and what was found instead.
    #[serde(default)]
    pub unconfirmed: BTreeMap<String, String>,
    /// Classification rules, each with its `source`.
    #[serde(default)]
    pub rules: Vec<toml::Table>,
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no preset \"{name}\" (the catalog has: {known})")]
    Unknown { name: String, known: String },
    #[error("preset {name} does not read: {message}")]
    Malformed { name: String, message: String },
}

/// The ids of every preset, sorted.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

/// One preset, read from its file.
pub fn get(name: &str) -> Result<Preset, CatalogError> {
    let Some((id, text)) = FILES.iter().find(|(n, _)| *n == name) else {
        return Err(CatalogError::Unknown {
            name: name.to_owned(),
            known: names().join(", "),
        });
    };
    let preset: Preset = toml::from_str(text).map_err(|e| CatalogError::Malformed {
        name: (*id).to_owned(),
        message: e.to_string(),
    })?;
    if preset.id != *id {
        return Err(CatalogError::Malformed {
            name: (*id).to_owned(),
            message: format!("its id is {}", preset.id),
        });
    }
    Ok(preset)
}

impl Preset {
    /// The settings as a `[providers.NAME]` table takes them: placeholders filled in from
    /// `values` (or their defaults), and each rule without its `source`. `Err` names a
    /// placeholder that has no value.
    pub fn settings_for(&self, values: &BTreeMap<String, String>) -> Result<toml::Table, String> {
        let mut filled = BTreeMap::new();
        for (name, p) in &self.placeholders {
            match values.get(name).or(p.default.as_ref()) {
                Some(v) => {
                    filled.insert(format!("{{{name}}}"), v.clone());
                }
                None => return Err(name.clone()),
            }
        }
        let fill = |s: &str| {
            filled
                .iter()
                .fold(s.to_owned(), |s, (from, to)| s.replace(from, to))
        };
        let mut settings = toml::Table::new();
        for (k, v) in &self.settings {
            let v = match v {
                toml::Value::String(s) => toml::Value::String(fill(s)),
                other => other.clone(),
            };
            settings.insert(k.clone(), v);
        }
        if !self.rules.is_empty() {
            let rules = self
                .rules
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.remove("source");
                    toml::Value::Table(r)
                })
                .collect();
            settings.insert("rules".into(), toml::Value::Array(rules));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests;
