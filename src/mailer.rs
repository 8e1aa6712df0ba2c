//! The mailer: sends what the outbox holds (over SMTP, one connection per round of sends with
//! every step bounded, see `smtp`; or as files), marks each notice sent or failed, and retries
//! with backoff when the server is down. It sleeps until the next notice is due or a check
//! queues one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MailTransport, NoticesConfig, Url};
use crate::domain::{ConnectionId, PausedBy, PipelineState, ProviderId};
use crate::notices::{NoticeError, Rendered, Templates, explain};
use crate::store::{Connection, Lease, NoticeKind, OutboxItem, Store, StoreError};

mod smtp;

/// Notices claimed at once.
const BATCH: u32 = 50;
/// A safety net for notices queued by another replica; our own wake the mailer at once.
const MAX_SLEEP: Duration = Duration::from_secs(600);
const RETRY_START: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(1800);
/// How long stopping waits for the last due notices.
const FLUSH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("{0}")]
    Notice(#[from] NoticeError),
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot create the mail directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why one message did not go out; permanent means retrying cannot help (a rejected address).
#[derive(Debug)]
struct SendError {
    permanent: bool,
    message: String,
}

enum Transport {
    Smtp(Box<smtp::Smtp>),
    File(AsyncFileTransport<Tokio1Executor>),
}

impl Transport {
    fn new(config: &Config) -> Result<Self, MailerError> {
        Ok(match &config.mail.transport {
            MailTransport::File(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| MailerError::Dir {
                    path: dir.display().to_string(),
                    source,
                })?;
                Transport::File(AsyncFileTransport::new(dir))
            }
            MailTransport::Smtp(s) => Transport::Smtp(Box::new(smtp::Smtp::new(s))),
        })
    }

    async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Smtp(t) => t.send(&message).await,
            Transport::File(t) => t.send(message).await.map(drop).map_err(|e| SendError {
                permanent: false,
                message: e.to_string(),
            }),
        }
    }

    /// Ends a round of sends (closes the SMTP connection it kept open).
    async fn close(&self) {
        if let Transport::Smtp(t) = self {
            t.close().await;
        }
    }
}

pub struct Mailer {
    store: Arc<dyn Store>,
    transport: Transport,
    templates: Templates,
    from: Mailbox,
    base_url: Url,
    notices: NoticesConfig,
    providers: BTreeMap<ProviderId, String>,
    instance: String,
    /// How long a claimed notice stays ours if we die while sending it (`limits.lease`).
    lease: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Serialize)]
struct PipelineView {
    name: String,
    position: Option<String>,
}

#[derive(Serialize)]
struct ConnectionView {
    name: String,
    provider: String,
    account: Option<String>,
    explanation: String,
    since: String,
    link: String,
    link_expires: String,
    pipelines: Vec<PipelineView>,
}

fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Mailer {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        instance: String,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, MailerError> {
        Ok(Self {
            store,
            transport: Transport::new(config)?,
            templates: Templates::load(config.mail.templates_dir.as_deref())?,
            from: config.mail.from.clone(),
            base_url: config.http.public_base_url.clone(),
            notices: config.notices.clone(),
            providers: config
                .providers
                .values()
                .map(|p| (p.id.clone(), p.display_name.clone()))
                .collect(),
            instance,
            lease: config.limits.lease,
            metrics,
        })
    }

    /// Sends until `shutdown`, waking when `signal` says a notice was queued or when the next
    /// retry is due.
    pub async fn run(self, signal: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            // A stop does not wait for a slow mail server: what was claimed and not sent is
            // taken up again when its lease ends.
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break,
                sent = self.send_due() => sent,
            };
            let claimed = match sent {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("mailer: {e}");
                    0
                }
            };
            if claimed > 0 && !shutdown.is_cancelled() {
                continue;
            }
            let wait = match self.store.next_outbox_due().await {
                Ok(Some(at)) => (at - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::error!("mailer: cannot read the outbox: {e}");
                    RETRY_START
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = signal.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Stopping: send what is due now (the checks that just finished may have queued some),
        // without holding the stop up for long. The rest waits in the outbox.
        match tokio::time::timeout(FLUSH, self.send_due()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("mailer: {e}"),
            Err(_) => {
                tracing::warn!("mailer: stopped before every due notice went out; they stay queued")
            }
        }
    }

    /// Claims due notices and sends them; returns how many were claimed.
    pub async fn send_due(&self) -> Result<usize, MailerError> {
        let sent = self.send_claimed().await;
        self.transport.close().await;
        sent
    }

    async fn send_claimed(&self) -> Result<usize, MailerError> {
        let now = Utc::now();
        let lease = Lease {
            owner: self.instance.clone(),
            until: now + delta(self.lease),
        };
        let items = self.store.claim_outbox(&lease, now, BATCH).await?;
        let claimed = items.len();
        // An owner's expired-credentials notices and reminders go out together; the rest one by one.
        let mut groups: BTreeMap<(String, bool), Vec<OutboxItem>> = BTreeMap::new();
        let mut singles = Vec::new();
        for item in items {
            match item.kind {
                NoticeKind::CredentialsExpired | NoticeKind::Reminder => groups
                    .entry((
                        item.recipient.to_string(),
                        item.kind == NoticeKind::Reminder,
                    ))
                    .or_default()
                    .push(item),
                _ => singles.push(item),
            }
        }
        for ((_, reminder), group) in groups {
            self.send_expired(group, reminder).await?;
        }
        for item in singles {
            self.send_single(item).await?;
        }
        Ok(claimed)
    }

    async fn send_expired(
        &self,
        items: Vec<OutboxItem>,
        reminder: bool,
    ) -> Result<(), MailerError> {
        let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
        let mut views = Vec::new();
        for item in &items {
            if let Some(view) = self.expired_view(item).await? {
                views.push(view);
            }
        }
        if views.is_empty() {
            // Reconnected (or removed) before the notice went out: nothing to say any more.
            self.store
                .outbox_sent(&ids, Utc::now(), Some("not sent: no longer broken"))
                .await?;
            return Ok(());
        }
        let context = serde_json::json!({ "reminder": reminder, "connections": views });
        let rendered = self.templates.render("credentials_expired", &context)?;
        self.deliver(&items[0], &ids, rendered).await
    }

    /// The facts of one broken connection, with a fresh reauthorize link; `None` when the
    /// incident is over or the connection gone.
    async fn expired_view(&self, item: &OutboxItem) -> Result<Option<ConnectionView>, MailerError> {
        let (Some(id), Some(incident)) = (&item.connection, item.incident) else {
            return Ok(None);
        };
        let incident = self.store.incident(incident).await?;
        if incident.closed_at.is_some() {
            return Ok(None);
        }
        let connection = match self.store.connection(id).await {
            Ok(c) => c,
            Err(StoreError::ConnectionNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (link, expires) = self.link(id, Some(incident.id)).await?;
        let provider = self.provider_name(&connection);
        let pipelines = self
            .store
            .pipelines_of(id)
            .await?
            .into_iter()
            .filter(|p| {
                p.state == PipelineState::Paused && p.paused_by == Some(PausedBy::Credwatch)
            })
            .map(|p| PipelineView {
                name: p.name,
                position: p.paused_at_position.map(String::from),
            })
            .collect();
        Ok(Some(ConnectionView {
            explanation: explain(incident.category, &provider),
            name: connection.name,
            provider,
            account: connection.account,
            since: human(incident.opened_at),
            link,
            link_expires: human(expires),
            pipelines,
        }))
    }

    async fn send_single(&self, item: OutboxItem) -> Result<(), MailerError> {
        let ids = [item.id];
        let payload: serde_json::Value = serde_json::from_str(&item.payload).unwrap_or_default();
        let connection = match &item.connection {
            Some(id) => match self.store.connection(id).await {
                Ok(c) => Some(c),
                Err(StoreError::ConnectionNotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let (kind, context) = match (item.kind, connection) {
            (NoticeKind::OperatorAlert, _) => ("operator_alert", payload),
            (NoticeKind::Reconnected, Some(c)) => {
                let Some(incident) = item.incident else {
                    return Ok(self
                        .store
                        .outbox_sent(&ids, Utc::now(), Some("not sent: no incident"))
                        .await?);
                };
                if !self.store.owner_told(incident).await? {
                    // No "reconnected" for an outage the owner never heard of.
                    return Ok(self
                        .store
                        .outbox_sent(
                            &ids,
                            Utc::now(),
                            Some("not sent: the owner was never told of the outage"),
                        )
                        .await?);
                }
                let incident = self.store.incident(incident).await?;
                let resumed: Vec<String> = payload["resumed"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let pipelines: Vec<PipelineView> = self
                    .store
                    .pipelines_of(&c.id)
                    .await?
                    .into_iter()
                    .filter(|p| resumed.iter().any(|r| r == p.id.as_str()))
                    .map(|p| PipelineView {
                        name: p.name,
                        // Where it resumes from, positions reported while paused included.
                        position: p.position.map(String::from),
                    })
                    .collect();
                let context = serde_json::json!({
                    "name": c.name, "provider": self.provider_name(&c), "account": c.account,
                    "since": human(incident.opened_at),
                    "until": human(incident.closed_at.unwrap_or_else(Utc::now)),
                    "pipelines": pipelines,
                });
                ("reconnected", context)
            }
            (NoticeKind::ExpiringSoon, Some(c)) => {
                let Some(expires) = c.refresh_expires_at else {
                    return Ok(self
                        .store
                        .outbox_sent(&ids, Utc::now(), Some("not sent: no end date"))
                        .await?);
                };
                let (link, _) = self.link(&c.id, None).await?;
                let days = (expires - Utc::now()).num_days().max(0);
                let context = serde_json::json!({
                    "name": c.name, "provider": self.provider_name(&c), "account": c.account,
                    "expires": human(expires), "days": days, "link": link,
                });
                ("expiring_soon", context)
            }
            _ => {
                return Ok(self
                    .store
                    .outbox_sent(&ids, Utc::now(), Some("not sent: the connection is gone"))
                    .await?);
            }
        };
        let rendered = self.templates.render(kind, &context)?;
        self.deliver(&item, &ids, rendered).await
    }

    /// Sends one message and records the outcome for every notice it carries.
    async fn deliver(
        &self,
        first: &OutboxItem,
        ids: &[i64],
        r: Rendered,
    ) -> Result<(), MailerError> {
        let to = match first.recipient.as_str().parse::<lettre::Address>() {
            Ok(a) => Mailbox::new(None, a),
            Err(e) => {
                // Checked when the connection was added; a row edited by hand could still fail.
                return Ok(self
                    .store
                    .outbox_failed(ids, &e.to_string(), Utc::now())
                    .await?);
            }
        };
        // MIME headers on every message (UTF-8 text arrives intact), and a Message-ID, which
        // spam filters expect.
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(r.subject)
            .message_id(Some(self.message_id()));
        let message = match r.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(r.text, html)),
            None => builder.singlepart(SinglePart::plain(r.text)),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(recipient = %first.recipient, "cannot build the e-mail: {e}");
                return Ok(self
                    .store
                    .outbox_failed(ids, &e.to_string(), Utc::now())
                    .await?);
            }
        };
        let sent = self.transport.send(message).await;
        self.metrics.mail(first.kind.as_str(), sent.is_ok());
        match sent {
            Ok(()) => {
                tracing::info!(recipient = %first.recipient, kind = %first.kind, notices = ids.len(), "e-mail sent");
                self.store.outbox_sent(ids, Utc::now(), None).await?;
            }
            Err(e) if e.permanent => {
                tracing::error!(recipient = %first.recipient, kind = %first.kind,
                    "the mail server refused the e-mail for good; it will not be retried: {}", e.message);
                self.store
                    .outbox_failed(ids, &e.message, Utc::now())
                    .await?;
            }
            Err(e) => {
                let wait = RETRY_START
                    .saturating_mul(1 << first.attempts.min(16))
                    .min(RETRY_MAX);
                tracing::warn!(recipient = %first.recipient, kind = %first.kind,
                    retry_in = %humantime::format_duration(wait), "e-mail not sent, will retry: {}", e.message);
                self.store
                    .outbox_retry(ids, &e.message, Utc::now() + delta(wait))
                    .await?;
            }
        }
        Ok(())
    }

    async fn link(
        &self,
        connection: &ConnectionId,
        incident: Option<i64>,
    ) -> Result<(String, DateTime<Utc>), MailerError> {
        Ok(crate::links::create(
            self.store.as_ref(),
            &self.base_url,
            self.notices.link_lifetime,
            connection,
            incident,
        )
        .await?)
    }

    /// `<random@sender's domain>`: unique, and of a domain we may speak for.
    fn message_id(&self) -> String {
        use rand::Rng;
        let random: u128 = rand::thread_rng().r#gen();
        format!("<{random:032x}@{}>", self.from.email.domain())
    }

    fn provider_name(&self, c: &Connection) -> String {
        self.providers
            .get(&c.provider)
            .cloned()
            .unwrap_or_else(|| c.provider.to_string())
    }
}
