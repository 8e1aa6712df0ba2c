//! Webhook deliveries: every event of the log, to every `[[webhooks]]` endpoint that wants its
//! type, signed per the Standard Webhooks spec, at least once and in order per connection.
//! Each endpoint is a channel of the outbox (`outbox`): claimed under leases, so replicas share
//! the work and a crash re-delivers (with the same `webhook-id`) rather than loses.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::ExposeSecret;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WebhookConfig};
use crate::domain::EmailAddress;
use crate::events::{Envelope, id_of};
use crate::metrics::Metrics;
use crate::outbox::{Backoff, Channel, Outcome, Recorded, Worker};
use crate::store::deliveries::Delivery;
use crate::store::{Lease, Store, StoreError};

/// Deliveries claimed at once per endpoint (each of a different order key).
const BATCH: u32 = 32;
/// The first retry after 5 s, each later one twice as long, up to an hour.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(5),
    max: Duration::from_secs(3600),
};
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

/// The deliveries of every endpoint: one outbox worker each, so a slow endpoint holds no
/// other back.
pub struct Webhooks {
    channels: Vec<EndpointChannel>,
    instance: String,
    lease: Duration,
    wake: Arc<tokio::sync::Notify>,
}

/// One endpoint as a channel of the outbox.
struct EndpointChannel {
    endpoint: Endpoint,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    operator: Option<EmailAddress>,
    metrics: Arc<Metrics>,
    /// Woken when the operator's e-mail about a failing endpoint is queued.
    mailer: Arc<tokio::sync::Notify>,
}

impl Webhooks {
    /// `mailer` is woken when an operator alert is queued.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        instance: String,
        metrics: Arc<Metrics>,
        mailer: Arc<tokio::sync::Notify>,
    ) -> Result<Self, WebhookError> {
        // A redirect is not followed: the receiver is what the config names, nowhere else.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("credwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let channels = config
            .webhooks
            .iter()
            .map(|w| {
                let sign = |s: &secrecy::SecretString| {
                    standardwebhooks::Webhook::new(s.expose_secret())
                        .map_err(|_| WebhookError::Secret(w.name.clone()))
                };
                Ok(EndpointChannel {
                    endpoint: Endpoint {
                        signer: sign(&w.secret)?,
                        previous: w.previous_secret.as_ref().map(sign).transpose()?,
                        config: w.clone(),
                    },
                    store: store.clone(),
                    http: http.clone(),
                    operator: config.operator_email.clone(),
                    metrics: metrics.clone(),
                    mailer: mailer.clone(),
                })
            })
            .collect::<Result<_, WebhookError>>()?;
        Ok(Self {
            channels,
            instance,
            lease: config.limits.lease,
            // Events written here wake the workers at once; other replicas' within a RELOOK.
            wake: store.committed(),
        })
    }

    /// Delivers until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut workers = JoinSet::new();
        for channel in self.channels {
            let worker = Worker::new(
                channel,
                self.instance.clone(),
                self.lease,
                self.wake.clone(),
            );
            workers.spawn(worker.run(cancel.clone()));
        }
        while workers.join_next().await.is_some() {}
    }
}

#[async_trait::async_trait]
impl Channel for EndpointChannel {
    type Unit = Delivery;
    type Error = StoreError;

    fn name(&self) -> String {
        format!("webhook {}", self.endpoint.config.name)
    }

    /// New events fanned out to the endpoint first, then its due deliveries.
    async fn claim(&self, lease: &Lease, now: DateTime<Utc>) -> Result<Vec<Delivery>, StoreError> {
        let name = &self.endpoint.config.name;
        self.store
            .fan_out(name, &self.endpoint.config.events, now)
            .await?;
        self.store.claim_deliveries(name, lease, now, BATCH).await
    }

    /// One POST of the event, signed with the current secret (and the previous one while it
    /// is being rotated out).
    async fn deliver(&self, d: &Delivery) -> Result<Outcome, StoreError> {
        let endpoint = &self.endpoint;
        let id = id_of(d.event.seq);
        let body = match serde_json::to_vec(&Envelope::from(d.event.clone())) {
            Ok(b) => b,
            Err(e) => {
                return Ok(Outcome::FailedForGood(format!(
                    "cannot write the event: {e}"
                )));
            }
        };
        let timestamp = Utc::now().timestamp();
        let mut signature = match endpoint.signer.sign(&id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::FailedForGood(format!("cannot sign: {e}"))),
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
        Ok(match sent {
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
                    Outcome::Sent
                } else {
                    Outcome::RetryLater(format!("event {id}: HTTP {}", status.as_u16()))
                }
            }
            Err(e) if e.is_timeout() => Outcome::RetryLater(format!(
                "event {id}: no answer within {}",
                humantime::format_duration(endpoint.config.timeout)
            )),
            Err(e) if e.is_connect() => Outcome::RetryLater(format!("event {id}: cannot connect")),
            Err(_) => Outcome::RetryLater(format!("event {id}: the request failed")),
        })
    }

    fn attempts(&self, d: &Delivery) -> u32 {
        d.attempts
    }

    fn retry_until(&self, d: &Delivery) -> Option<DateTime<Utc>> {
        Some(
            d.created_at
                + TimeDelta::from_std(self.endpoint.config.max_age).unwrap_or(TimeDelta::MAX),
        )
    }

    /// The round's deliveries in one write (each write waits for the disk); retries and
    /// failures one by one (the operator is told once per endpoint and failing spell).
    async fn record(&self, done: Vec<(Delivery, Recorded)>) -> Result<(), StoreError> {
        let name = self.endpoint.config.name.as_str();
        let now = Utc::now();
        let mut delivered = Vec::new();
        for (d, recorded) in done {
            let kind = d.event.event.type_name();
            match recorded {
                Recorded::Sent { .. } => delivered.push(d),
                Recorded::Retry { error, at } => {
                    self.metrics.webhook(name, kind, false, None);
                    self.store.retry_delivery(&d, &error, at).await?;
                }
                Recorded::Failed { error } => {
                    self.metrics.webhook(name, kind, false, None);
                    self.store
                        .delivery_failed(&d, &error, now, self.operator.as_ref())
                        .await?;
                    self.mailer.notify_one();
                }
            }
        }
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
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store
            .next_delivery_due(&self.endpoint.config.name)
            .await
    }

    fn backoff(&self) -> Backoff {
        BACKOFF
    }

    fn concurrency(&self) -> usize {
        BATCH as usize
    }

    fn max_sleep(&self) -> Duration {
        RELOOK
    }
}
