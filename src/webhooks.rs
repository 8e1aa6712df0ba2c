//! Webhook deliveries: every event of the log, to every `[[webhooks]]` endpoint that wants its
//! type, signed per the Standard Webhooks spec, at least once and in order per connection.
//! Delivery state lives in the store, claimed under leases, so replicas share the work and a
//! crash re-delivers (with the same `webhook-id`) rather than loses.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WebhookConfig};
use crate::domain::EmailAddress;
use crate::events::{Envelope, id_of};
use crate::metrics::Metrics;
use crate::store::deliveries::Delivery;
use crate::store::{Lease, Store, StoreError};

/// Deliveries claimed at once per endpoint (each of a different order key).
const BATCH: u32 = 32;
/// The first retry; each later one waits twice as long, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often the worker looks for events written by other replicas (its own wake it at once).
const RELOOK: Duration = Duration::from_secs(5);
/// What is read of an endpoint's answer, at most: only its status matters.
const MAX_ANSWER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the webhooks' HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("webhook {0}: its signing secret is not base64")]
    Secret(String),
}

/// An endpoint, ready to sign for.
struct Endpoint {
    config: WebhookConfig,
    signer: standardwebhooks::Webhook,
    previous: Option<standardwebhooks::Webhook>,
}

pub struct Webhooks {
    store: Arc<dyn Store>,
    endpoints: Vec<Arc<Endpoint>>,
    http: reqwest::Client,
    instance: String,
    lease: Duration,
    operator: Option<EmailAddress>,
    metrics: Arc<Metrics>,
}

/// What one attempt came to.
enum Attempt {
    Delivered,
    Failed(String),
}

impl Webhooks {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        instance: String,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WebhookError> {
        let endpoints = config
            .webhooks
            .iter()
            .map(|w| {
                let sign = |s: &secrecy::SecretString| {
                    standardwebhooks::Webhook::new(s.expose_secret())
                        .map_err(|_| WebhookError::Secret(w.name.clone()))
                };
                Ok(Arc::new(Endpoint {
                    signer: sign(&w.secret)?,
                    previous: w.previous_secret.as_ref().map(sign).transpose()?,
                    config: w.clone(),
                }))
            })
            .collect::<Result<_, WebhookError>>()?;
        Ok(Self {
            store,
            endpoints,
            // A redirect is not followed: the receiver is what the config names, nowhere else.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("credwatch/", env!("CARGO_PKG_VERSION")))
                .build()?,
            instance,
            lease: config.limits.lease,
            operator: config.operator_email.clone(),
            metrics,
        })
    }

    /// Delivers until cancelled; an attempt in flight finishes (its timeout bounds it).
    pub async fn run(self, cancel: CancellationToken) {
        if self.endpoints.is_empty() {
            return;
        }
        let this = Arc::new(self);
        let committed = this.store.committed();
        loop {
            let notified = committed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut next = tokio::time::Instant::now() + RELOOK;
            for endpoint in &this.endpoints {
                match this.round(endpoint, &cancel).await {
                    Ok(Some(due)) => next = next.min(due),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(endpoint = %endpoint.config.name, "webhook deliveries: {e}")
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Fans new events out to the endpoint and delivers what is due; answers when the next
    /// delivery is due.
    async fn round(
        self: &Arc<Self>,
        endpoint: &Arc<Endpoint>,
        cancel: &CancellationToken,
    ) -> Result<Option<tokio::time::Instant>, StoreError> {
        let name = endpoint.config.name.as_str();
        self.store
            .fan_out(name, &endpoint.config.events, Utc::now())
            .await?;
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let now = Utc::now();
            let lease = Lease {
                owner: self.instance.clone(),
                until: now + TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::MAX),
            };
            let claimed = self
                .store
                .claim_deliveries(name, &lease, now, BATCH)
                .await?;
            if claimed.is_empty() {
                break;
            }
            let mut attempts = JoinSet::new();
            for d in claimed {
                let (this, endpoint) = (self.clone(), endpoint.clone());
                attempts.spawn(async move {
                    let result = this.attempt(&endpoint, &d).await;
                    (d, result)
                });
            }
            let mut delivered = Vec::new();
            while let Some(done) = attempts.join_next().await {
                let Ok((d, result)) = done else { continue };
                match result {
                    Attempt::Delivered => delivered.push(d),
                    Attempt::Failed(error) => {
                        if let Err(e) = self.failed(endpoint, &d, error).await {
                            tracing::error!(
                                endpoint = name,
                                "cannot record a webhook attempt: {e}"
                            );
                        }
                    }
                }
            }
            // One write for the batch's deliveries: each write waits for the disk.
            let now = Utc::now();
            self.store.delivered(&delivered, now).await?;
            for d in &delivered {
                let age = (now - d.event.at).to_std().unwrap_or_default();
                self.metrics.webhook(
                    name,
                    d.event.event.type_name(),
                    true,
                    Some(age.as_secs_f64()),
                );
            }
        }
        let due = self.store.next_delivery_due(name).await?;
        Ok(due.map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + wait
        }))
    }

    /// One POST of the event, signed with the current secret (and the previous one while it
    /// is being rotated out).
    async fn attempt(&self, endpoint: &Endpoint, d: &Delivery) -> Attempt {
        let id = id_of(d.event.seq);
        let body = match serde_json::to_vec(&Envelope::from(d.event.clone())) {
            Ok(b) => b,
            Err(e) => return Attempt::Failed(format!("cannot write the event: {e}")),
        };
        let timestamp = Utc::now().timestamp();
        let mut signature = match endpoint.signer.sign(&id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => return Attempt::Failed(format!("cannot sign: {e}")),
        };
        if let Some(Ok(old)) = endpoint
            .previous
            .as_ref()
            .map(|p| p.sign(&id, timestamp, &body))
        {
            signature.push(' ');
            signature.push_str(&old);
        }
        let sent = self
            .http
            .post(endpoint.config.url.clone())
            .timeout(endpoint.config.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(mut response) => {
                let status = response.status();
                // A little of the answer, so the connection can be reused; never all of it.
                let mut read = 0;
                while read < MAX_ANSWER {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                if status.is_success() {
                    Attempt::Delivered
                } else {
                    Attempt::Failed(format!("HTTP {}", status.as_u16()))
                }
            }
            Err(e) if e.is_timeout() => Attempt::Failed(format!(
                "no answer within {}",
                humantime::format_duration(endpoint.config.timeout)
            )),
            Err(e) if e.is_connect() => Attempt::Failed("cannot connect".into()),
            Err(_) => Attempt::Failed("the request failed".into()),
        }
    }

    /// Records a failed attempt: retried later with backoff and jitter, or, past the
    /// endpoint's `max_age`, given up (the operator is told once per failing spell).
    async fn failed(
        &self,
        endpoint: &Endpoint,
        d: &Delivery,
        error: String,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let kind = d.event.event.type_name();
        let name = endpoint.config.name.as_str();
        self.metrics.webhook(name, kind, false, None);
        let wait = backoff(d.attempts);
        let at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        let deadline =
            d.created_at + TimeDelta::from_std(endpoint.config.max_age).unwrap_or(TimeDelta::MAX);
        if at > deadline {
            tracing::error!(endpoint = name, event = %id_of(d.event.seq), kind, attempts = d.attempts,
                "webhook given up after max_age: {error}");
            self.store
                .delivery_failed(d, &error, now, self.operator.as_ref())
                .await
        } else {
            tracing::warn!(endpoint = name, event = %id_of(d.event.seq), kind, attempts = d.attempts,
                retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                "webhook not delivered: {error}");
            self.store.retry_delivery(d, &error, at).await
        }
    }
}

/// Exponential from `FIRST_BACKOFF`, capped, with ±20% jitter so a receiver coming back is not
/// met by every retry at once.
fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF);
    base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_an_hour() {
        let first = backoff(1);
        assert!(first >= Duration::from_secs(4) && first <= Duration::from_secs(6));
        let third = backoff(3);
        assert!(third >= Duration::from_secs(16) && third <= Duration::from_secs(24));
        assert!(backoff(40) <= MAX_BACKOFF.mul_f64(1.2));
    }
}
