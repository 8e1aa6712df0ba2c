//! `[providers.NAME] preset = "ID"`: the catalog's settings under the operator's own. Every key the
//! config sets wins; `rules` are the operator's first, then the preset's; the preset's
//! `authorize_params`, `token_params`, `token_headers` and `probe_headers` are merged key by key.
//! Placeholders (`{tenant}`) are keys of the provider table, checked like the rest.

use super::validate::Checker;
use super::*;

/// Which preset a provider took, and which of its keys came from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetUse {
    pub id: String,
    pub keys: Vec<String>,
}

/// A placeholder's value goes into URLs: a host label, a domain, an id.
fn placeholder_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Checker<'_> {
    /// The provider table with its preset's settings under it, and what was taken. `None` when
    /// the preset or a placeholder is wrong (the problem is recorded).
    pub(super) fn with_preset(
        &mut self,
        key: &str,
        value: config::Value,
    ) -> Option<(config::Value, Option<PresetUse>)> {
        let origin = value.origin().map(str::to_owned);
        let Ok(mut table) = value.clone().into_table() else {
            // Not a table: the provider's own parsing says so.
            return Some((value, None));
        };
        let Some(name) = table.remove("preset") else {
            return Some((value, None));
        };
        let k = |field: &str| format!("{key}.{field}");
        let name = match name.into_string() {
            Ok(n) => n,
            Err(_) => {
                self.problem(&k("preset"), "expected the name of a preset, as text");
                return None;
            }
        };
        let preset = match crate::catalog::get(&name) {
            Ok(p) => p,
            Err(e) => {
                self.problem(&k("preset"), e.to_string());
                return None;
            }
        };
        let mut values = BTreeMap::new();
        let mut ok = true;
        for (placeholder, p) in preset.placeholders.iter() {
            match table.remove(placeholder).map(config::Value::into_string) {
                Some(Ok(v)) if placeholder_value(&v) => {
                    values.insert(placeholder.clone(), v);
                }
                Some(_) => {
                    self.problem(
                        &k(placeholder),
                        format!("expected letters, digits, '.', '-' or '_' ({})", p.help),
                    );
                    ok = false;
                }
                None if p.default.is_none() => {
                    self.problem(
                        &k(placeholder),
                        format!("missing: preset {name} needs it ({})", p.help),
                    );
                    ok = false;
                }
                None => {}
            }
        }
        if !ok {
            return None;
        }
        let settings = match preset.settings_for(&values) {
            Ok(s) => s,
            Err(missing) => {
                self.problem(&k(&missing), format!("missing: preset {name} needs it"));
                return None;
            }
        };
        let settings = match to_config_values(&settings) {
            Ok(s) => s,
            Err(e) => {
                self.problem(&k("preset"), format!("preset {name} does not read: {e}"));
                return None;
            }
        };
        let mut taken = Vec::new();
        for (field, theirs) in settings {
            match (field.as_str(), table.remove(&field)) {
                (_, None) => {
                    taken.push(field.clone());
                    table.insert(field, theirs);
                }
                ("rules", Some(ours)) => {
                    let mut rules = ours.clone().into_array().unwrap_or_default();
                    rules.extend(theirs.into_array().unwrap_or_default());
                    table.insert(field, config::Value::new(origin.as_ref(), rules));
                }
                (
                    "authorize_params" | "token_params" | "token_headers" | "probe_headers",
                    Some(ours),
                ) => {
                    let mut params = theirs.into_table().unwrap_or_default();
                    if let Ok(own) = ours.clone().into_table() {
                        params.extend(own);
                    }
                    table.insert(field, config::Value::new(origin.as_ref(), params));
                }
                (_, Some(ours)) => {
                    table.insert(field, ours);
                }
            }
        }
        taken.sort();
        Some((
            config::Value::new(origin.as_ref(), table),
            Some(PresetUse {
                id: name,
                keys: taken,
            }),
        ))
    }
}

/// A TOML table as the `config` crate's values, the form the provider's own keys have.
fn to_config_values(settings: &toml::Table) -> Result<config::Map<String, config::Value>, String> {
    let text = toml::to_string(settings).map_err(|e| e.to_string())?;
    config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| e.to_string())
}
