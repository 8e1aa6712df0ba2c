//! Classification rules as data: what a provider's error looks like, and the category it means.
//! The built-in presets (`presets.toml`) and the operator's `rules` in the config share one format.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::domain::{Category, Phase, text_enum};

const PRESETS: &str = include_str!("presets.toml");

text_enum!(
    /// Which built-in rules a provider gets besides the generic RFC 6749 ones.
    ProviderKind {
        Generic => "generic",
        Microsoft => "microsoft",
        Google => "google",
        Facebook => "facebook",
        Slack => "slack",
        Auth0 => "auth0",
    }
);

/// One rule: every field given must match. Field meanings are documented in `presets.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRule")]
pub struct Rule {
    pub phase: Option<Phase>,
    pub status: Option<StatusMatch>,
    pub error: Option<String>,
    pub error_subtype: Option<String>,
    pub code: Option<String>,
    pub subcode: Option<String>,
    /// Lower-cased once here; matched against the lower-cased description.
    pub description: Option<String>,
    pub category: Category,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default)]
    status: Option<NumberOrText>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_subtype: Option<String>,
    #[serde(default)]
    code: Option<NumberOrText>,
    #[serde(default)]
    subcode: Option<NumberOrText>,
    #[serde(default)]
    description: Option<String>,
    category: Category,
}

/// TOML (and the environment) may give a code as a number or a string; both mean the same.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(i64),
    Text(String),
}

impl NumberOrText {
    fn into_text(self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(s) => s.trim().to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Exact(u16),
    /// `4xx`: the first digit.
    Class(u16),
}

impl StatusMatch {
    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Exact(s) => s == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl TryFrom<RawRule> for Rule {
    type Error = String;

    fn try_from(r: RawRule) -> Result<Self, String> {
        let status = r
            .status
            .map(|s| {
                let text = s.into_text();
                let bad =
                    || format!("status {text:?} is not an HTTP status such as 403 or \"4xx\"");
                if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
                    match class.parse::<u16>() {
                        Ok(c @ 1..=5) => Ok(StatusMatch::Class(c)),
                        _ => Err(bad()),
                    }
                } else {
                    match text.parse::<u16>() {
                        Ok(s @ 100..=599) => Ok(StatusMatch::Exact(s)),
                        _ => Err(bad()),
                    }
                }
            })
            .transpose()?;
        let rule = Rule {
            phase: r.phase,
            status,
            error: r.error,
            error_subtype: r.error_subtype,
            code: r.code.map(NumberOrText::into_text),
            subcode: r.subcode.map(NumberOrText::into_text),
            description: r.description.map(|d| d.to_lowercase()),
            category: r.category,
        };
        let matches_something = rule.status.is_some()
            || rule.error.is_some()
            || rule.error_subtype.is_some()
            || rule.code.is_some()
            || rule.subcode.is_some()
            || rule.description.is_some();
        if !matches_something {
            return Err(
                "a rule must match on at least one of status, error, error_subtype, code, subcode or description"
                    .to_owned(),
            );
        }
        Ok(rule)
    }
}

/// What the classifier reads out of an error answer, whatever its provider's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub error: Option<String>,
    pub description: Option<String>,
    pub subtype: Option<String>,
    pub codes: Vec<String>,
    pub subcode: Option<String>,
}

impl ErrorFields {
    /// Reads the RFC 6749 shape, Microsoft's `error_codes`, Google's `error_subtype`, Slack's
    /// `ok:false`, the Graph-API shape `{"error": {"code", "error_subcode", "message"}}`, and
    /// where there is no `error`: a list `{"errors": [{"code", "message"}]}` (Intercom), or a
    /// top-level text `code` or `status` and `message` (Box, Notion, HubSpot's
    /// `BAD_REFRESH_TOKEN`, Pipedrive).
    pub fn from_json(v: &serde_json::Value) -> Self {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let mut f = ErrorFields::default();
        match v.get("error") {
            Some(serde_json::Value::Object(inner)) => {
                // Dropbox names its error in `.tag`.
                f.error = inner
                    .get("type")
                    .or_else(|| inner.get("status"))
                    .or_else(|| inner.get(".tag"))
                    .and_then(text);
                f.description = inner.get("message").and_then(text);
                f.codes.extend(inner.get("code").and_then(text));
                f.subcode = inner.get("error_subcode").and_then(text);
            }
            Some(other) => f.error = text(other),
            None => {
                let first = v
                    .get("errors")
                    .and_then(|e| e.as_array())
                    .and_then(|e| e.first());
                match first {
                    Some(e) => {
                        f.error = e.get("code").and_then(text);
                        f.description = e.get("message").and_then(text);
                    }
                    None => {
                        // A text code first (Box, Notion: `code` beside a numeric `status`).
                        f.error = ["code", "status"]
                            .iter()
                            .find_map(|k| v.get(*k).and_then(|s| s.as_str()).map(str::to_owned));
                        // Either rule field matches it: `error` or `code`.
                        f.codes
                            .extend(v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
                        f.description = v.get("message").and_then(text);
                    }
                }
            }
        }
        if let Some(d) = v.get("error_description").and_then(text) {
            f.description = Some(d);
        }
        f.subtype = v.get("error_subtype").and_then(text);
        if let Some(serde_json::Value::Array(codes)) = v.get("error_codes") {
            f.codes.extend(codes.iter().filter_map(text));
        }
        if let Some(d) = &f.description {
            f.codes.extend(aadsts_codes(d));
        }
        f.codes.sort();
        f.codes.dedup();
        f
    }

    /// RFC 6750 §3: a resource server's `WWW-Authenticate: Bearer error="invalid_token", …`.
    pub fn from_www_authenticate(header: &str) -> Self {
        let mut f = ErrorFields::default();
        let params = header
            .trim()
            .strip_prefix("Bearer")
            .or_else(|| header.trim().strip_prefix("bearer"))
            .unwrap_or("");
        for (name, value) in auth_params(params) {
            match name.as_str() {
                "error" => f.error = Some(value),
                "error_description" => f.description = Some(value),
                _ => {}
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.error.is_none()
            && self.description.is_none()
            && self.subtype.is_none()
            && self.codes.is_empty()
            && self.subcode.is_none()
    }
}

impl fmt::Display for ErrorFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(e) = &self.error {
            parts.push(e.clone());
        }
        if let Some(s) = &self.subtype {
            parts.push(format!("subtype {s}"));
        }
        if !self.codes.is_empty() {
            parts.push(format!("code {}", self.codes.join("/")));
        }
        if let Some(s) = &self.subcode {
            parts.push(format!("subcode {s}"));
        }
        let head = parts.join(", ");
        match &self.description {
            Some(d) if head.is_empty() => write!(f, "{d}"),
            Some(d) => write!(f, "{head}: {d}"),
            None => write!(f, "{head}"),
        }
    }
}

fn aadsts_codes(description: &str) -> impl Iterator<Item = String> + '_ {
    description.match_indices("AADSTS").filter_map(|(i, m)| {
        let digits: String = description[i + m.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (!digits.is_empty()).then_some(digits)
    })
}

/// `name="value", name=token` pairs of an auth header, names lower-cased.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((name, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

impl Rule {
    pub fn matches(&self, phase: Phase, status: u16, f: &ErrorFields) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref() == Some(w.as_str()),
        };
        self.phase.is_none_or(|p| p == phase)
            && self.status.is_none_or(|s| s.matches(status))
            && eq(&self.error, &f.error)
            && eq(&self.error_subtype, &f.subtype)
            && eq(&self.subcode, &f.subcode)
            && self.code.as_ref().is_none_or(|c| f.codes.contains(c))
            && self.description.as_ref().is_none_or(|d| {
                f.description
                    .as_ref()
                    .is_some_and(|have| have.to_lowercase().contains(d.as_str()))
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("built-in classification presets do not parse: {0}")]
pub struct PresetError(String);

/// The rules a provider of `kind` gets after its own: its kind's preset, then the generic ones.
pub fn preset(kind: ProviderKind) -> Result<Vec<Rule>, PresetError> {
    let value = config::Config::builder()
        .add_source(config::File::from_str(PRESETS, config::FileFormat::Toml))
        .build()
        .map_err(|e| PresetError(e.to_string()))?;
    let mut all: BTreeMap<String, Vec<Rule>> = value
        .try_deserialize()
        .map_err(|e| PresetError(e.to_string()))?;
    let mut rules = match kind {
        ProviderKind::Generic => Vec::new(),
        other => all.remove(other.as_str()).unwrap_or_default(),
    };
    rules.extend(all.remove("generic").unwrap_or_default());
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_generic_comes_last() {
        let generic = preset(ProviderKind::Generic).unwrap();
        assert!(generic.len() >= 10);
        for kind in ProviderKind::ALL {
            let rules = preset(*kind).unwrap();
            assert!(rules.ends_with(&generic), "{kind}");
            if *kind != ProviderKind::Generic {
                assert!(rules.len() > generic.len(), "{kind} has its own rules");
            }
        }
    }

    #[test]
    fn fields_from_each_provider_shape() {
        let ms = ErrorFields::from_json(&serde_json::json!({
            "error": "invalid_grant",
            "error_description": "AADSTS70008: The refresh token has expired due to inactivity.",
            "error_codes": [70008]
        }));
        assert_eq!(ms.error.as_deref(), Some("invalid_grant"));
        assert_eq!(ms.codes, ["70008"]);

        let fb = ErrorFields::from_json(&serde_json::json!({
            "error": {"message": "Error validating access token", "type": "OAuthException", "code": 190, "error_subcode": 463}
        }));
        assert_eq!(fb.error.as_deref(), Some("OAuthException"));
        assert_eq!(fb.codes, ["190"]);
        assert_eq!(fb.subcode.as_deref(), Some("463"));

        let slack =
            ErrorFields::from_json(&serde_json::json!({"ok": false, "error": "token_revoked"}));
        assert_eq!(slack.error.as_deref(), Some("token_revoked"));

        let bearer = ErrorFields::from_www_authenticate(
            r#"Bearer realm="api", error="invalid_token", error_description="The access token \"x\" expired""#,
        );
        assert_eq!(bearer.error.as_deref(), Some("invalid_token"));
        assert_eq!(
            bearer.description.as_deref(),
            Some(r#"The access token "x" expired"#)
        );
        assert!(ErrorFields::from_www_authenticate("Basic realm=\"x\"").is_empty());
    }

    #[test]
    fn a_rule_that_matches_everything_is_refused() {
        let raw: Result<Vec<Rule>, _> = serde_json::from_str(r#"[{"category": "revoked"}]"#);
        assert!(raw.unwrap_err().to_string().contains("at least one"));
        let raw: Result<Vec<Rule>, _> =
            serde_json::from_str(r#"[{"status": "6xx", "category": "revoked"}]"#);
        assert!(raw.unwrap_err().to_string().contains("HTTP status"));
        let ok: Vec<Rule> =
            serde_json::from_str(r#"[{"status": "4xx", "code": 17, "category": "rate_limited"}]"#)
                .unwrap();
        assert_eq!(ok[0].status, Some(StatusMatch::Class(4)));
        assert_eq!(ok[0].code.as_deref(), Some("17"));
    }
}
