//! Prometheus metrics: counters and histograms kept as things happen, and the state of the
//! database (connections by status and reason, the outbox) read at each scrape.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::{Category, ProviderId};
use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    provider: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    provider: String,
    status: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    key: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandoutLabels {
    key: String,
    /// "stored" (fresh enough as it was) or "refreshed" (it waited for a refresh).
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    endpoint: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// A scrape waits this long for the database, no longer (Prometheus' own timeout is 10 s).
const STORE_READ: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Metrics {
    registry: Registry,
    webhooks_delivered: Family<WebhookLabels, Counter>,
    webhook_failures: Family<WebhookLabels, Counter>,
    webhook_latency: Family<EndpointLabel, Histogram>,
    webhooks_pending: Family<EndpointLabel, Gauge>,
    webhooks_oldest_pending: Family<EndpointLabel, Gauge>,
    api_requests: Family<ApiLabels, Counter>,
    access_tokens: Family<HandoutLabels, Counter>,
    checks: Family<CheckLabels, Counter>,
    check_seconds: Family<ProviderLabel, Histogram>,
    sweep_seconds: Histogram,
    rotation_commit_seconds: Histogram,
    mail_sent: Family<KindLabel, Counter>,
    mail_failures: Family<KindLabel, Counter>,
    connections: Family<ConnectionLabels, Gauge>,
    outbox_pending: Gauge,
    outbox_failed: Gauge,
    last_sweep: Gauge,
    ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credwatch");
        let checks = Family::<CheckLabels, Counter>::default();
        let check_seconds = Family::<ProviderLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let sweep_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let rotation_commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let mail_sent = Family::<KindLabel, Counter>::default();
        let mail_failures = Family::<KindLabel, Counter>::default();
        let connections = Family::<ConnectionLabels, Gauge>::default();
        let outbox_pending = Gauge::default();
        let outbox_failed = Gauge::default();
        let last_sweep = Gauge::default();
        let ready = Gauge::default();
        registry.register(
            "last_sweep_timestamp_seconds",
            "When this daemon last finished a sweep in which the database took its results \
             (Unix time); alert when it stops moving",
            last_sweep.clone(),
        );
        registry.register(
            "ready",
            "1 while the database answers and takes writes (as /readyz says), else 0",
            ready.clone(),
        );
        let webhooks_delivered = Family::<WebhookLabels, Counter>::default();
        let webhook_failures = Family::<WebhookLabels, Counter>::default();
        let webhook_latency = Family::<EndpointLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 16))
        });
        let webhooks_pending = Family::<EndpointLabel, Gauge>::default();
        let webhooks_oldest_pending = Family::<EndpointLabel, Gauge>::default();
        registry.register(
            "webhooks_delivered",
            "Webhook deliveries acknowledged with a 2xx, by endpoint and event type",
            webhooks_delivered.clone(),
        );
        registry.register(
            "webhook_failures",
            "Webhook attempts that failed (retried, or given up past max_age)",
            webhook_failures.clone(),
        );
        registry.register(
            "webhook_delivery_seconds",
            "From an event to its delivery",
            webhook_latency.clone(),
        );
        registry.register(
            "webhooks_pending",
            "Deliveries waiting, by endpoint",
            webhooks_pending.clone(),
        );
        registry.register(
            "webhooks_oldest_pending_seconds",
            "Age of the oldest delivery waiting, by endpoint",
            webhooks_oldest_pending.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        let access_tokens = Family::<HandoutLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests to the platform's API, by key name and HTTP status",
            api_requests.clone(),
        );
        registry.register(
            "access_tokens_handed_out",
            "Access tokens handed out, by key name and whether a refresh was waited for",
            access_tokens.clone(),
        );
        registry.register("checks", "Checks by provider and category", checks.clone());
        registry.register(
            "check_duration_seconds",
            "Time a check spent calling its provider",
            check_seconds.clone(),
        );
        registry.register(
            "sweep_duration_seconds",
            "Time one sweep took",
            sweep_seconds.clone(),
        );
        registry.register(
            "rotation_commit_seconds",
            "From a provider's answer with new tokens to their commit: the window in which a \
             crash loses tokens the provider already considers live",
            rotation_commit_seconds.clone(),
        );
        registry.register(
            "mail_sent",
            "E-mails sent, by notice kind",
            mail_sent.clone(),
        );
        registry.register(
            "mail_send_failures",
            "E-mails the server did not accept (retried or, when permanent, given up)",
            mail_failures.clone(),
        );
        registry.register(
            "connections",
            "Connections by provider, status and reason",
            connections.clone(),
        );
        registry.register(
            "outbox_pending",
            "Notices waiting to be sent",
            outbox_pending.clone(),
        );
        registry.register(
            "outbox_failed",
            "Notices given up on (a permanently refused address)",
            outbox_failed.clone(),
        );
        Self {
            registry,
            webhooks_delivered,
            webhook_failures,
            webhook_latency,
            webhooks_pending,
            webhooks_oldest_pending,
            api_requests,
            access_tokens,
            checks,
            check_seconds,
            sweep_seconds,
            rotation_commit_seconds,
            mail_sent,
            mail_failures,
            connections,
            outbox_pending,
            outbox_failed,
            last_sweep,
            ready,
        }
    }

    pub fn check(&self, provider: &ProviderId, category: Category, seconds: f64) {
        self.checks
            .get_or_create(&CheckLabels {
                provider: provider.to_string(),
                category: category.to_string(),
            })
            .inc();
        self.check_seconds
            .get_or_create(&ProviderLabel {
                provider: provider.to_string(),
            })
            .observe(seconds);
    }

    /// One webhook attempt; `latency` (event to delivery) when it was delivered.
    pub fn webhook(&self, endpoint: &str, kind: &str, delivered: bool, latency: Option<f64>) {
        let labels = WebhookLabels {
            endpoint: endpoint.to_owned(),
            r#type: kind.to_owned(),
        };
        if delivered {
            self.webhooks_delivered.get_or_create(&labels).inc();
        } else {
            self.webhook_failures.get_or_create(&labels).inc();
        }
        if let Some(seconds) = latency {
            self.webhook_latency
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.to_owned(),
                })
                .observe(seconds);
        }
    }

    pub fn api_request(&self, key: &str, status: u16) {
        self.api_requests
            .get_or_create(&ApiLabels {
                key: key.to_owned(),
                status,
            })
            .inc();
    }

    pub fn access_token(&self, key: &str, refreshed: bool) {
        self.access_tokens
            .get_or_create(&HandoutLabels {
                key: key.to_owned(),
                source: if refreshed { "refreshed" } else { "stored" }.to_owned(),
            })
            .inc();
    }

    pub fn rotation_commit(&self, seconds: f64) {
        self.rotation_commit_seconds.observe(seconds);
    }

    /// A sweep ended; `stored` when the database took its results (or nothing was due).
    pub fn sweep(&self, seconds: f64, stored: bool) {
        self.sweep_seconds.observe(seconds);
        if stored {
            self.last_sweep.set(chrono::Utc::now().timestamp());
        }
    }

    pub fn mail(&self, kind: &str, sent: bool) {
        let label = KindLabel {
            kind: kind.to_owned(),
        };
        if sent {
            self.mail_sent.get_or_create(&label).inc();
        } else {
            self.mail_failures.get_or_create(&label).inc();
        }
    }

    /// The text exposition, with the database's state read now. A database that is down or
    /// slow does not fail the scrape: the counters are still worth having, the database's
    /// gauges are left out, and `credwatch_ready` says 0.
    pub async fn render(&self, store: &dyn Store) -> String {
        let mut ready = store.writes_failing().is_none();
        // Read afresh each scrape: a connection status nobody has any more must disappear.
        self.connections.clear();
        match tokio::time::timeout(STORE_READ, store.metrics_snapshot()).await {
            Ok(Ok(snapshot)) => {
                for c in snapshot.connections {
                    self.connections
                        .get_or_create(&ConnectionLabels {
                            provider: c.provider,
                            status: c.status,
                            reason: c.reason.unwrap_or_default(),
                        })
                        .set(c.count);
                }
                self.outbox_pending.set(snapshot.outbox_pending);
                self.outbox_failed.set(snapshot.outbox_failed);
            }
            failed => {
                ready = false;
                match failed {
                    Ok(Err(e)) => tracing::warn!("metrics: cannot read the store: {e}"),
                    _ => tracing::warn!("metrics: the store did not answer in time"),
                }
            }
        }
        let now = chrono::Utc::now();
        match tokio::time::timeout(STORE_READ, store.endpoint_status()).await {
            Ok(Ok(endpoints)) => {
                for e in endpoints {
                    let label = EndpointLabel {
                        endpoint: e.endpoint,
                    };
                    self.webhooks_pending
                        .get_or_create(&label)
                        .set(i64::try_from(e.pending).unwrap_or(i64::MAX));
                    let oldest = e
                        .oldest_pending_at
                        .map_or(0, |at| (now - at).num_seconds().max(0));
                    self.webhooks_oldest_pending
                        .get_or_create(&label)
                        .set(oldest);
                }
            }
            _ => ready = false,
        }
        self.ready.set(i64::from(ready));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
