//! Keeping secrets out of what we keep and print. A provider may quote back what it was sent or
//! what it just issued: the refresh token in an error, the new access token at the probe, the
//! client secret after a failed authentication, often encoded (Base64 inside a Basic header,
//! percent-encoded form fields, JSON escapes). Every secret of a check, in each of those forms,
//! is replaced before any text is stored, logged or mailed.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

const MARK: &str = "[redacted]";
/// Shorter values are not worth hiding and would blank ordinary words.
const MIN_LEN: usize = 8;

/// The secrets one check handles. Their encodings are worked out only for a text long enough
/// to hold one: most details ("refreshed") are not, and a sweep checks thousands a second.
#[derive(Default)]
pub struct Secrets {
    raw: Vec<SecretString>,
}

impl Secrets {
    pub fn add(&mut self, secret: &SecretString) {
        if secret.expose_secret().len() >= MIN_LEN {
            self.raw.push(secret.clone());
        }
    }

    /// The client's credentials as HTTP Basic sends them (`id:secret`, Base64).
    pub fn add_client(&mut self, client_id: &str, secret: &SecretString) {
        self.add(secret);
        let pair = SecretString::from(format!("{client_id}:{}", secret.expose_secret()));
        self.add(&pair);
    }

    pub fn redact(&self, mut text: String) -> String {
        // Every form of a secret is at least as long as the secret.
        let shortest = self.raw.iter().map(|s| s.expose_secret().len()).min();
        if shortest.is_none_or(|n| text.len() < n) {
            return text;
        }
        let mut forms: Vec<String> = self
            .raw
            .iter()
            .flat_map(|s| forms(s.expose_secret()))
            .collect();
        // Longest first, so a secret inside another's encoding goes as a whole.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        for form in forms {
            if text.contains(form.as_str()) {
                text = text.replace(form.as_str(), MARK);
            }
        }
        text
    }
}

/// A secret as it travels: raw, Base64 (standard and URL-safe, padded or not), form-encoded,
/// and JSON-escaped.
fn forms(raw: &str) -> [String; 7] {
    [
        raw.to_owned(),
        STANDARD.encode(raw),
        STANDARD_NO_PAD.encode(raw),
        URL_SAFE.encode(raw),
        URL_SAFE_NO_PAD.encode(raw),
        percent(raw),
        raw.replace('/', "\\/"),
    ]
}

/// application/x-www-form-urlencoded, as a token goes in a request body.
fn percent(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_caught_in_every_form_it_travels_in() {
        let token = "rt/0123+456789=abc";
        let mut s = Secrets::default();
        s.add(&SecretString::from(token));
        s.add_client("credwatch", &SecretString::from("s3cret-value"));
        for shown in [
            token.to_owned(),
            STANDARD.encode(token),
            URL_SAFE_NO_PAD.encode(token),
            percent(token),
            token.replace('/', "\\/"),
            "s3cret-value".to_owned(),
            STANDARD.encode("credwatch:s3cret-value"),
        ] {
            let out = s.redact(format!("invalid_grant: token {shown} was rejected"));
            assert_eq!(
                out, "invalid_grant: token [redacted] was rejected",
                "{shown}"
            );
        }
        // Short values and ordinary text are left alone.
        let mut short = Secrets::default();
        short.add(&SecretString::from("abc"));
        assert_eq!(short.redact("abc def".into()), "abc def");
    }
}
