//! `[[webhooks]]`: where events are delivered, signed per the Standard Webhooks spec.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::validate::Checker;
use super::*;

/// One endpoint that gets events.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Names the endpoint in the database, the log, metrics and the command line.
    pub name: String,
    pub url: Url,
    /// `whsec_…` (base64 of the key); bodies are signed with it.
    pub secret: SecretString,
    /// The secret being rotated out: bodies carry its signature too while it is set.
    pub previous_secret: Option<SecretString>,
    /// The event types it wants; empty: all.
    pub events: Vec<String>,
    /// How long an event is retried before it is given up (and the operator told).
    pub max_age: Duration,
    /// One delivery attempt, connect to answer.
    pub timeout: Duration,
}

impl Checker<'_> {
    pub(super) fn webhooks(&mut self, value: Option<config::Value>) -> Option<Vec<WebhookConfig>> {
        let Some(value) = value else {
            return Some(Vec::new());
        };
        let entries: Vec<raw::Webhook> = self.deserialize("webhooks", value)?;
        let mut out: Vec<WebhookConfig> = Vec::with_capacity(entries.len());
        let mut ok = true;
        for (i, w) in entries.into_iter().enumerate() {
            match self.webhook(&format!("webhooks[{i}]"), w, &out) {
                Some(w) => out.push(w),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn webhook(
        &mut self,
        key: &str,
        w: raw::Webhook,
        earlier: &[WebhookConfig],
    ) -> Option<WebhookConfig> {
        let name = match w.name {
            Some(n) if valid_key_name(&n) => {
                if earlier.iter().any(|e| e.name == n) {
                    self.problem(&format!("{key}.name"), format!("\"{n}\" is named twice"));
                    None
                } else {
                    Some(n)
                }
            }
            _ => {
                self.problem(
                    &format!("{key}.name"),
                    "expected 1 to 64 letters, digits, '-', '_' or '.'",
                );
                None
            }
        };
        let url = self.required_url(&format!("{key}.url"), w.url.as_deref());
        let secret =
            self.webhook_secret(&format!("{key}.secret"), w.secret, w.secret_file.as_deref());
        let secret = match secret {
            Some(Some(s)) => Some(s),
            Some(None) => {
                self.problem(
                    &format!("{key}.secret_file"),
                    "missing: every endpoint needs a signing secret (whsec_ followed by base64)",
                );
                None
            }
            None => None,
        };
        let previous = self.webhook_secret(
            &format!("{key}.previous_secret"),
            w.previous_secret,
            w.previous_secret_file.as_deref(),
        );
        let mut events = Vec::with_capacity(w.events.len());
        for t in w.events {
            if crate::events::TYPES.contains(&t.as_str()) {
                events.push(t);
            } else {
                self.problem(
                    &format!("{key}.events"),
                    format!("{t:?} is not one of: {}", crate::events::TYPES.join(", ")),
                );
            }
        }
        let max_age = self.duration(&format!("{key}.max_age"), w.max_age.as_deref(), "3d");
        let timeout = self.duration(&format!("{key}.timeout"), w.timeout.as_deref(), "10s");
        Some(WebhookConfig {
            name: name?,
            url: url?,
            secret: secret?,
            previous_secret: previous?,
            events,
            max_age: max_age?,
            timeout: timeout?,
        })
    }

    /// A signing secret, inline or from a file, checked to be one the signer takes.
    fn webhook_secret(
        &mut self,
        key: &str,
        inline: Option<SecretString>,
        file: Option<&str>,
    ) -> Option<Option<SecretString>> {
        let secret = self.secret(key, inline, file)?;
        if let Some(s) = &secret
            && standardwebhooks::Webhook::new(s.expose_secret()).is_err()
        {
            self.problem(
                key,
                "expected whsec_ followed by base64 (at least 24 bytes of key)",
            );
            return None;
        }
        if let Some(s) = &secret
            && s.expose_secret().trim_start_matches("whsec_").len() < 32
        {
            self.problem(
                key,
                "too short: use at least 24 random bytes, base64-encoded",
            );
            return None;
        }
        Some(secret)
    }
}
