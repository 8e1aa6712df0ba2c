//! A refresh whose answer never reached us: what to do before presenting the old refresh token
//! again (retry it, wait for the worker that sent it, ask the provider, or decide).

use super::*;

impl Checker {
    /// After a refresh whose answer was lost, a rotating provider may already have replaced the
    /// refresh token; presenting the old one past the provider's reuse grace looks like token
    /// theft and revokes the whole grant. Within the grace the old token is simply tried again.
    /// A refresh whose worker crashed or stalled first waits for that worker a while: one that
    /// was only stopped (a paused VM, a replica stalled past its lease) comes back with the new
    /// tokens and stores them (see `store_tokens`). Then introspection decides, where the
    /// provider offers it. Without it the old token is presented: a provider that rotated it
    /// answers `invalid_grant`, classified as a lost rotation rather than the owner's doing,
    /// and one the refresh never reached answers with new tokens. Breaking the connection
    /// without asking would break every connection whose refresh was in flight when a daemon
    /// died, those the provider never saw included.
    pub(super) async fn lost_rotation(
        &self,
        provider: &Provider,
        p: &crate::config::OAuthSettings,
        claimed: &Claimed,
        refresh: &SecretString,
    ) -> Lost {
        let conn = &claimed.connection;
        let Some(since) = conn.refresh_uncertain_since else {
            return Lost::No;
        };
        let now = Utc::now();
        if !p.rotates_refresh_tokens || now - since <= delta(p.reuse_grace) {
            return Lost::No;
        }
        let at = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Some(sent) = conn.refresh_interrupted_at
            && let Some(until) = sent.checked_add_signed(delta(self.limits.lease * 2))
            && now < until
        {
            let verdict = Classification::new(
                Category::Transient,
                format!(
                    "a refresh sent at {at} by a worker that then stopped has no stored answer; \
                     it is left to that worker until {}, in case it comes back with the new tokens",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None,
            );
            return Lost::Wait(verdict, until);
        }
        let Some(url) = &p.introspection_url else {
            return Lost::No;
        };
        if !self.may_send(claimed) {
            return Lost::NotSent;
        }
        let outcome = self.http.introspect(url, p, refresh).await;
        provider.pacer.wait().await;
        let unsure = |why: String| {
            Lost::Verdict(Classification::new(
                Category::Transient,
                format!(
                    "a refresh at {at} got no answer, and the provider could not say whether the \
                     old refresh token is still active ({why}); it is not presented until it can"
                ),
                None,
            ))
        };
        let r = match outcome {
            Outcome::Response(r) => r,
            Outcome::Transport(t) => return unsure(t.message),
        };
        let active = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool));
        match (r.status, active) {
            (200, Some(true)) => Lost::No,
            (200, Some(false)) => Lost::Verdict(Classification::new(
                Category::RotationLost,
                format!(
                    "a refresh at {at} got no answer, and the provider now reports the refresh \
                     token inactive: it rotated it then, and the new one never reached us"
                ),
                Some(r.status),
            )),
            (status, _) => unsure(format!(
                "introspection answered HTTP {status} without `active`"
            )),
        }
    }
}

/// What is known of a refresh whose answer was lost.
pub(super) enum Lost {
    /// Nothing stands in the way of a refresh.
    No,
    /// The check ends here, with this verdict.
    Verdict(Classification),
    /// The check ends here, with nothing changed but the next check, at this time.
    Wait(Classification, DateTime<Utc>),
    /// The lease would not cover the call that decides it.
    NotSent,
}
