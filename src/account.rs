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
        AccountSource::Probe(pointer) => {
            match provider.probe_url_for(tokens.instance_url.as_deref()) {
                Some(url) => match http.probe(provider, &url, &tokens.access_token).await {
                    Outcome::Response(r) if (200..300).contains(&r.status) => {
                        in_answer(pointer, &r.body).into_iter().collect()
                    }
                    _ => Vec::new(),
                },
                None => Vec::new(),
            }
        }
    };
    Identity(
        names
            .into_iter()
            .filter(|n: &String| !n.is_empty() && n.len() <= 256 && is_plain_text(n))
            .collect(),
    )
}

/// The account a probe's answer names at `pointer`: a string, or a number as its digits. A
/// null, an object or a missing field names no one (Zendesk answers an anonymous user, id null,
/// to a request whose credentials it did not take).
pub fn in_answer(pointer: &str, body: &[u8]) -> Option<String> {
    let answer = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    match answer.pointer(pointer)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::in_answer;

    #[test]
    fn an_answer_names_an_account_only_with_a_string_or_a_number() {
        let at = |body: &str| in_answer("/user/id", body.as_bytes());
        assert_eq!(at(r#"{"user":{"id":"u-1"}}"#).as_deref(), Some("u-1"));
        assert_eq!(at(r#"{"user":{"id":1234}}"#).as_deref(), Some("1234"));
        for nobody in [
            r#"{"user":{"id":null,"name":"Anonymous user"}}"#,
            r#"{"user":{"id":""}}"#,
            r#"{"user":{"id":{"x":1}}}"#,
            r#"{"user":{}}"#,
            "not json",
        ] {
            assert_eq!(at(nobody), None, "{nobody}");
        }
    }
}
