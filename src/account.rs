//! Whose account a grant is. A connection must keep reading the account it was made for: a
//! reauthorization by anyone else would send another person's data down its pipelines. The
//! provider's `account_from` says where to learn it (the id_token, or a field of the probe's
//! answer), and the same rule serves adding a connection and taking a reauthorization.

use crate::check::HttpClient;
use crate::classify::Outcome;
use crate::config::{AccountSource, ProviderConfig};
use crate::domain::is_plain_text;
use crate::tokens::TokenSet;

/// The names a grant answers to, most stable first (the subject before an e-mail address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity(Vec<String>);

impl Identity {
    /// The name to store with a new connection.
    pub fn primary(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    /// Whether the grant belongs to `account`.
    pub fn is(&self, account: &str) -> bool {
        self.0.iter().any(|a| a == account)
    }
}

/// What the grant says about its account, the way the provider's `account_from` says to ask.
/// Nothing usable (no id_token, an unverified e-mail, a probe that failed or named no one)
/// leaves it empty: unknown, never guessed.
pub async fn of_grant(provider: &ProviderConfig, tokens: &TokenSet, http: &HttpClient) -> Identity {
    let names = match &provider.account_from {
        AccountSource::IdToken => [&tokens.id_token_subject, &tokens.id_token_email]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        AccountSource::Probe(pointer) => match provider
            .probe_url_for(tokens.instance_url.as_deref())
        {
            Some(url) => match http.probe(provider, &url, &tokens.access_token).await {
                Outcome::Response(r) if (200..300).contains(&r.status) => {
                    serde_json::from_slice::<serde_json::Value>(&r.body)
                        .ok()
                        .and_then(|v| {
                            v.pointer(pointer)
                                .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned))
                        })
                        .into_iter()
                        .collect()
                }
                _ => Vec::new(),
            },
            None => Vec::new(),
        },
    };
    Identity(
        names
            .into_iter()
            .filter(|n: &String| !n.is_empty() && n.len() <= 256 && is_plain_text(n))
            .collect(),
    )
}
