//! `credwatch providers list|show`: the catalog, read without a config file.

use super::table::Table;
use super::{CliError, ProvidersCommand};
use crate::catalog::{self, Preset};

pub fn run(cmd: ProvidersCommand) -> Result<(), CliError> {
    match cmd {
        ProvidersCommand::List => {
            let mut table = Table::new(&[
                "PRESET",
                "PROVIDER",
                "REFRESH TOKENS",
                "ACCOUNT FROM",
                "NEEDS",
            ]);
            for name in catalog::names() {
                let p = read(name)?;
                table.row(vec![
                    p.id.clone(),
                    p.display_name.clone(),
                    refresh(&p),
                    text(&p, "account_from").unwrap_or_else(|| "id_token".into()),
                    p.placeholders
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
        ProvidersCommand::Show { name } => {
            let p = read(&name)?;
            println!("# {} (preset {}): {}", p.display_name, p.id, p.docs);
            println!("[providers.{}]\npreset = \"{}\"", p.id, p.id);
            println!("client_id = \"…\"\nclient_secret_file = \"…\"");
            for (placeholder, about) in p.placeholders.iter() {
                match &about.default {
                    Some(d) => println!("# {placeholder} = \"{d}\"  (default; {})", about.help),
                    None => println!("{placeholder} = \"…\"  # {}", about.help),
                }
            }
            println!("\n# What the preset sets (each key can be set in the config instead):");
            for (key, value) in &p.settings {
                println!("{key} = {value}");
                if let Some(source) = p.sources.get(key) {
                    println!("    # source: {source}");
                }
                if let Some(why) = p.unconfirmed.get(key) {
                    println!("    # NOT CONFIRMED by the provider's documentation: {why}");
                }
            }
            for (key, why) in p
                .unconfirmed
                .iter()
                .filter(|(k, _)| !p.settings.contains_key(*k))
            {
                println!("# {key}: NOT CONFIRMED by the provider's documentation: {why}");
            }
            if !p.rules.is_empty() {
                println!("\n# Classification rules (tried after the config's own `rules`):");
                for rule in &p.rules {
                    let source = rule.get("source").and_then(|s| s.as_str()).unwrap_or("");
                    let mut rule = rule.clone();
                    rule.remove("source");
                    println!("{}    # source: {source}", toml::Value::Table(rule));
                }
            }
            Ok(())
        }
    }
}

fn read(name: &str) -> Result<Preset, CliError> {
    catalog::get(name).map_err(|e| CliError::Input(e.to_string()))
}

fn text(p: &Preset, key: &str) -> Option<String> {
    p.settings
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// How a preset's refresh tokens behave, in a few words.
fn refresh(p: &Preset) -> String {
    let flag = |key: &str| p.settings.get(key).and_then(toml::Value::as_bool);
    if flag("issues_refresh_tokens") == Some(false) {
        return "none (long-lived tokens)".into();
    }
    let mut words = vec![if flag("rotates_refresh_tokens") == Some(true) {
        "rotating".to_owned()
    } else {
        "reusable".to_owned()
    }];
    if let Some(idle) = text(p, "refresh_token_idle_lifetime") {
        words.push(format!("{idle} unused"));
    }
    if let Some(end) = text(p, "refresh_token_lifetime") {
        words.push(format!("{end} at most"));
    }
    words.join(", ")
}
