//! The heart of the product: from what a provider answered to what it means for the
//! grant. Pure: no I/O, no clock but the one passed in, so every row of the brief is a table test.
//!
//! Order matters. Transport failures, 5xx, 429 and bodies that are not the promised JSON are
//! decided first, whatever the text says: an HTML error page that mentions `invalid_grant` is a
//! provider's bad minute, not a revocation. Only a well-formed error answer reaches the rules.

mod rules;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{Category, Phase};
use crate::tokens::TokenSet;

pub use rules::{ErrorFields, PresetError, ProviderKind, Rule, StatusMatch, preset};

/// At most this much of a provider's text is kept with a check.
const DETAIL_MAX: usize = 200;

/// The detail of every healthy refresh, and of every healthy probe.
pub const REFRESHED: &str = "refreshed";
pub const PROBE_ANSWERED: &str = "probe answered";

/// What came back from one call to a provider.
#[derive(Debug)]
pub enum Outcome {
    Transport(TransportFailure),
    Response(Response),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Timeout,
    Connect,
    /// The body was larger than the configured cap; reading stopped there.
    TooLarge,
    Other,
}

#[derive(Debug)]
pub struct TransportFailure {
    pub kind: TransportKind,
    /// A short description without URLs' query strings or bodies.
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<String>,
    pub www_authenticate: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// The classifier's answer: the category, a short safe description, and when to try again.
#[derive(Debug)]
pub struct Classification {
    pub category: Category,
    pub detail: String,
    pub http_status: Option<u16>,
    /// The provider asked us to wait this long (Retry-After).
    pub retry_after: Option<Duration>,
    /// A refresh that succeeded: the tokens it returned.
    pub tokens: Option<TokenSet>,
}

impl Classification {
    /// A verdict reached without a provider's answer (nothing to call, or our own failure).
    pub fn new(category: Category, detail: impl Into<String>, status: Option<u16>) -> Self {
        Self {
            category,
            detail: truncate(detail.into()),
            http_status: status,
            retry_after: None,
            tokens: None,
        }
    }
}

/// Classifies the answer to one call. `rules` are the provider's, in order (its own, its kind's
/// preset, the generic ones); `now` turns an HTTP-date Retry-After into a wait.
pub fn classify(
    phase: Phase,
    outcome: &Outcome,
    rules: &[Rule],
    now: DateTime<Utc>,
) -> Classification {
    let r = match outcome {
        Outcome::Transport(t) => {
            let what = match t.kind {
                TransportKind::Timeout => "timed out",
                TransportKind::Connect => "could not connect",
                TransportKind::TooLarge => "answer too large",
                TransportKind::Other => "request failed",
            };
            return Classification::new(
                Category::Transient,
                format!("{what}: {}", t.message),
                None,
            );
        }
        Outcome::Response(r) => r,
    };
    let status = Some(r.status);
    let retry_after = r.retry_after.as_deref().and_then(|v| retry_after(v, now));
    let with_wait = |mut c: Classification| {
        c.retry_after = retry_after;
        c
    };
    match r.status {
        429 => {
            return with_wait(Classification::new(
                Category::RateLimited,
                "HTTP 429 Too Many Requests",
                status,
            ));
        }
        500..=599 | 408 => {
            return with_wait(Classification::new(
                Category::Transient,
                format!("HTTP {}", r.status),
                status,
            ));
        }
        300..=399 => {
            // Never followed: a token endpoint that redirects is misconfigured or moved, and
            // following would send the refresh token somewhere we were not told about.
            let to = r.location.as_deref().unwrap_or("nowhere");
            return Classification::new(
                Category::Unknown,
                format!("HTTP {} redirect to {to} (not followed)", r.status),
                status,
            );
        }
        _ => {}
    }

    let success = (200..300).contains(&r.status);
    if success
        && phase == Phase::Refresh
        && let Ok(tokens) = TokenSet::from_json(&r.body, now)
    {
        let mut c = Classification::new(Category::Healthy, REFRESHED, status);
        c.tokens = Some(tokens);
        return c;
    }
    let json = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .filter(serde_json::Value::is_object);
    let fields = match &json {
        Some(v) if success && phase == Phase::Probe => {
            // A working token: only Slack-style `ok:false` says otherwise on a 2xx.
            if v.get("ok") != Some(&serde_json::Value::Bool(false)) {
                return Classification::new(Category::Healthy, PROBE_ANSWERED, status);
            }
            ErrorFields::from_json(v)
        }
        Some(v) => ErrorFields::from_json(v),
        None if success && phase == Phase::Probe => {
            return Classification::new(Category::Healthy, PROBE_ANSWERED, status);
        }
        None => {
            // RFC 6750 puts a resource server's verdict in the header, not the body.
            let header = r
                .www_authenticate
                .as_deref()
                .map(ErrorFields::from_www_authenticate)
                .filter(|f| f.error.is_some());
            match header {
                Some(f) => f,
                None => {
                    return Classification::new(
                        Category::Transient,
                        format!("HTTP {}: {}", r.status, body_kind(&r.body)),
                        status,
                    );
                }
            }
        }
    };
    if fields.is_empty() {
        let (category, what) = if success && phase == Phase::Refresh {
            (Category::Transient, "malformed token response")
        } else {
            (Category::Unknown, "error answer without an error code")
        };
        return Classification::new(category, format!("HTTP {}: {what}", r.status), status);
    }
    let category = rules
        .iter()
        .find(|rule| rule.matches(phase, r.status, &fields))
        .map(|rule| rule.category)
        .unwrap_or(Category::Unknown);
    with_wait(Classification::new(
        category,
        format!("HTTP {}: {fields}", r.status),
        status,
    ))
}

/// The longest wait a Retry-After is taken for: a provider's answer must not park a
/// connection for years (or overflow a date). The schedule caps it further at `backoff_max`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP-date; at most `MAX_RETRY_AFTER`.
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        // Digits too many for a u64 are still a (very long) number of seconds.
        Err(_) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => MAX_RETRY_AFTER,
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&Utc) - now).to_std().ok()?
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn body_kind(body: &[u8]) -> &'static str {
    let start = String::from_utf8_lossy(&body[..body.len().min(64)]).to_ascii_lowercase();
    let start = start.trim_start();
    if body.is_empty() {
        "empty body"
    } else if start.starts_with("<!doctype html") || start.starts_with("<html") {
        "an HTML page instead of JSON"
    } else if start.starts_with('{') || start.starts_with('[') {
        "truncated or malformed JSON"
    } else {
        "a body that is not JSON"
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > DETAIL_MAX {
        let mut end = DETAIL_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
