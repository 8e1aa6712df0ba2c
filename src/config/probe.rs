//! How the probe asks: its method, fixed headers some APIs require (a version), and where the
//! credential goes.

use super::validate::Checker;
use super::*;

/// The probe's request, beyond its URL and the credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeRequest {
    /// POST for the APIs whose "who am I" call is one (Dropbox); GET otherwise.
    pub post: bool,
    /// Sent as they are (`Notion-Version`).
    pub headers: reqwest::header::HeaderMap,
    /// The probe URL's path is asked at the grant's own API origin when its token response
    /// named one (Salesforce's `instance_url`).
    pub at_instance: bool,
}

impl ProviderConfig {
    /// The probe URL for a grant whose API lives at `instance` (when it said so).
    pub fn probe_url_for(&self, instance: Option<&str>) -> Option<Url> {
        let url = self.probe_url.as_ref()?;
        let origin = instance
            .filter(|_| self.probe.at_instance)
            .and_then(crate::tokens::instance_origin)
            .and_then(|o| Url::parse(&o).ok());
        match origin {
            Some(mut at) => {
                at.set_path(url.path());
                at.set_query(url.query());
                Some(at)
            }
            None => Some(url.clone()),
        }
    }
}

impl Checker<'_> {
    /// `probe_method` and `probe_headers`.
    pub(super) fn probe_request(&mut self, key: &str, p: &raw::Provider) -> Option<ProbeRequest> {
        let k = |field: &str| format!("{key}.{field}");
        let post = match p.probe_method.as_deref().unwrap_or("GET") {
            "GET" | "get" => false,
            "POST" | "post" => true,
            _ => {
                self.problem(&k("probe_method"), "expected \"GET\" or \"POST\"");
                return None;
            }
        };
        let headers = self.fixed_headers(&k("probe_headers"), &p.probe_headers)?;
        Some(ProbeRequest {
            post,
            headers,
            at_instance: p.probe_at_instance,
        })
    }

    /// Headers sent as they are (`probe_headers`, `token_headers`): never the credential, which
    /// has its own place.
    pub(super) fn fixed_headers(
        &mut self,
        key: &str,
        given: &std::collections::BTreeMap<String, String>,
    ) -> Option<reqwest::header::HeaderMap> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in given {
            let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|n| *n != reqwest::header::AUTHORIZATION)
                .zip(reqwest::header::HeaderValue::from_str(value).ok());
            let Some((name_ok, value_ok)) = parsed else {
                self.problem(
                    &format!("{key}.{name}"),
                    "expected a header name and a printable value (credentials have their own keys)",
                );
                return None;
            };
            headers.insert(name_ok, value_ok);
        }
        Some(headers)
    }

    /// `header:NAME`, `header:NAME:PREFIX` or `query:NAME`.
    pub(super) fn placement(&mut self, key: &str, value: &str) -> Option<KeyPlacement> {
        let parsed = match value.split_once(':') {
            Some(("header", rest)) => {
                let (name, prefix) = rest.split_once(':').unwrap_or((rest, ""));
                let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
                    && crate::domain::is_plain_text(prefix);
                valid.then(|| KeyPlacement::Header {
                    name: name.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            Some(("query", name)) if !name.is_empty() => Some(KeyPlacement::Query {
                name: name.to_owned(),
            }),
            _ => None,
        };
        if parsed.is_none() {
            self.problem(
                key,
                "expected \"header:NAME\", \"header:NAME:PREFIX\" (such as \"header:Authorization:Bearer \") or \"query:NAME\"",
            );
        }
        parsed
    }
}
