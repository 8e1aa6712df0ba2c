//! The mailer: e-mail as a channel of the outbox (`outbox`), which claims, retries with
//! backoff and records. This says what an e-mail is: the notices it carries, rendered, sent
//! over SMTP (one session per round with every step bounded, see `smtp`) or written as files.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MailTransport, NoticesConfig, Url};
use crate::domain::{ConnectionId, PausedBy, PipelineState, ProviderId};
use crate::notices::{NoticeError, Rendered, Templates, explain};
use crate::outbox::{Backoff, Channel, Outcome, Recorded, Worker};
use crate::store::{Connection, Lease, NoticeKind, OutboxItem, Store, StoreError};

mod smtp;

/// Notices claimed at once.
const BATCH: u32 = 50;
/// A safety net for notices queued by another replica; our own wake the mailer at once.
const MAX_SLEEP: Duration = Duration::from_secs(600);
const RETRY_START: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(1800);

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
    /// What the owners of a key or password provider type in ("API key", ...).
    typed: BTreeMap<ProviderId, &'static str>,
    /// The platform's name, as the owner pages show it.
    brand: Option<String>,
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
    /// What the owner types to reconnect it ("API key"); none for a sign-in.
    typed: Option<&'static str>,
    since: String,
    link: String,
    link_expires: String,
    pipelines: Vec<PipelineView>,
}

fn human(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
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
            typed: config
                .providers
                .values()
                .filter_map(|p| match p.auth {
                    crate::config::ProviderAuth::OAuth(_) => None,
                    crate::config::ProviderAuth::Basic => {
                        Some((p.id.clone(), "user name and password"))
                    }
                    crate::config::ProviderAuth::ApiKey(_) => Some((p.id.clone(), "API key")),
                })
                .collect(),
            brand: config.http.brand_name.clone(),
            instance,
            lease: config.limits.lease,
            metrics,
        })
    }

    /// Sends until `shutdown`, waking when `signal` says a notice was queued or when the next
    /// retry is due: the outbox worker with e-mail as its channel.
    pub async fn run(self, signal: Arc<Notify>, shutdown: CancellationToken) {
        let (instance, lease) = (self.instance.clone(), self.lease);
        Worker::new(self, instance, lease, signal)
            .run(shutdown)
            .await
    }

    async fn send_expired(
        &self,
        items: &[OutboxItem],
        reminder: bool,
    ) -> Result<Outcome, MailerError> {
        let mut views = Vec::new();
        for item in items {
            if let Some(view) = self.expired_view(item).await? {
                views.push(view);
            }
        }
        let Some(first) = items.first().filter(|_| !views.is_empty()) else {
            // Reconnected (or removed) before the notice went out: nothing to say any more.
            return Ok(Outcome::Moot("not sent: no longer broken".into()));
        };
        let context = serde_json::json!({ "reminder": reminder, "connections": views });
        let rendered = self.templates.render("credentials_expired", &context)?;
        Ok(self.send(first, rendered).await)
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
            explanation: match self.typed.get(&connection.provider) {
                Some(what) => format!(
                    "{provider} no longer accepts the {what} it was given: it was revoked, \
                     replaced or expired, or the account's access changed."
                ),
                None => explain(incident.category, &provider),
            },
            typed: self.typed.get(&connection.provider).copied(),
            name: connection.name,
            provider,
            account: connection.account,
            since: human(incident.opened_at),
            link,
            link_expires: human(expires),
            pipelines,
        }))
    }

    async fn send_single(&self, item: &OutboxItem) -> Result<Outcome, MailerError> {
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
                    return Ok(Outcome::Moot("not sent: no incident".into()));
                };
                if !self.store.owner_told(incident).await? {
                    // No "reconnected" for an outage the owner never heard of.
                    return Ok(Outcome::Moot(
                        "not sent: the owner was never told of the outage".into(),
                    ));
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
                    return Ok(Outcome::Moot("not sent: no end date".into()));
                };
                let (link, _) = self.link(&c.id, None).await?;
                let days = (expires - Utc::now()).num_days().max(0);
                let context = serde_json::json!({
                    "name": c.name, "provider": self.provider_name(&c), "account": c.account,
                    "expires": human(expires), "days": days, "link": link,
                });
                ("expiring_soon", context)
            }
            (NoticeKind::ConnectInvitation, _) => match self.invitation(&payload).await? {
                Some(context) => ("connect_invitation", context),
                None => {
                    return Ok(Outcome::Moot(
                        "not sent: its provider is no longer configured".into(),
                    ));
                }
            },
            _ => return Ok(Outcome::Moot("not sent: the connection is gone".into())),
        };
        let rendered = self.templates.render(kind, &context)?;
        Ok(self.send(item, rendered).await)
    }

    /// An invitation's words, with its connect link, made now: the link exists only in the
    /// e-mail, and its lifetime starts when the owner can first read it.
    async fn invitation(
        &self,
        payload: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, MailerError> {
        let invite: crate::store::connect::NewConnectLink = serde_json::from_value(payload.clone())
            .map_err(|e| StoreError::Corrupt(format!("an invitation: {e}")))?;
        let Some(provider) = self.providers.get(&invite.provider) else {
            return Ok(None);
        };
        let (link, expires) = crate::links::invite(
            self.store.as_ref(),
            &self.base_url,
            self.notices.connect_link_lifetime,
            &invite,
        )
        .await?;
        Ok(Some(serde_json::json!({
            "name": invite.name, "provider": provider, "account": invite.account,
            "typed": self.typed.get(&invite.provider), "brand": self.brand,
            "link": link, "link_expires": human(expires),
        })))
    }

    /// Sends one message; `first` is the notice it answers to (its recipient and kind).
    async fn send(&self, first: &OutboxItem, r: Rendered) -> Outcome {
        let to = match first.recipient.as_str().parse::<lettre::Address>() {
            Ok(a) => Mailbox::new(None, a),
            // Checked when the connection was added; a row edited by hand could still fail.
            Err(e) => return Outcome::FailedForGood(e.to_string()),
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
                return Outcome::FailedForGood(e.to_string());
            }
        };
        let sent = self.transport.send(message).await;
        self.metrics.mail(first.kind.as_str(), sent.is_ok());
        match sent {
            Ok(()) => {
                tracing::info!(recipient = %first.recipient, kind = %first.kind, "e-mail sent");
                Outcome::Sent
            }
            Err(e) if e.permanent => {
                tracing::error!(recipient = %first.recipient, kind = %first.kind,
                    "the mail server refused the e-mail for good; it will not be retried: {}", e.message);
                Outcome::FailedForGood(e.message)
            }
            Err(e) => Outcome::RetryLater(format!(
                "e-mail to {} ({}): {}",
                first.recipient, first.kind, e.message
            )),
        }
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

/// One e-mail and the notices it carries: an owner's expired-credentials notices (or their
/// reminders) go out together, every other notice alone.
pub struct Mail {
    items: Vec<OutboxItem>,
    /// `Some(reminder)` for the expired-credentials digest.
    digest: Option<bool>,
}

#[async_trait::async_trait]
impl Channel for Mailer {
    type Unit = Mail;
    type Error = MailerError;

    fn name(&self) -> String {
        "mailer".into()
    }

    async fn claim(&self, lease: &Lease, now: DateTime<Utc>) -> Result<Vec<Mail>, MailerError> {
        let items = self.store.claim_outbox(lease, now, BATCH).await?;
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
                _ => singles.push(Mail {
                    items: vec![item],
                    digest: None,
                }),
            }
        }
        let digests = groups.into_iter().map(|((_, reminder), items)| Mail {
            items,
            digest: Some(reminder),
        });
        Ok(digests.chain(singles).collect())
    }

    async fn deliver(&self, mail: &Mail) -> Result<Outcome, MailerError> {
        match (mail.digest, mail.items.first()) {
            (Some(reminder), _) => self.send_expired(&mail.items, reminder).await,
            (None, Some(item)) => self.send_single(item).await,
            (None, None) => Ok(Outcome::Moot("nothing to send".into())),
        }
    }

    fn attempts(&self, mail: &Mail) -> u32 {
        mail.items.first().map_or(1, |i| i.attempts + 1)
    }

    /// E-mails are retried for as long as the server is down: none is lost.
    fn retry_until(&self, _: &Mail) -> Option<DateTime<Utc>> {
        None
    }

    async fn record(&self, done: Vec<(Mail, Recorded)>) -> Result<(), MailerError> {
        let now = Utc::now();
        for (mail, recorded) in done {
            let ids: Vec<i64> = mail.items.iter().map(|i| i.id).collect();
            match recorded {
                Recorded::Sent { note } => {
                    self.store.outbox_sent(&ids, now, note.as_deref()).await?
                }
                Recorded::Retry { error, at } => self.store.outbox_retry(&ids, &error, at).await?,
                Recorded::Failed { error } => self.store.outbox_failed(&ids, &error, now).await?,
            }
        }
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, MailerError> {
        Ok(self.store.next_outbox_due().await?)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: RETRY_START,
            max: RETRY_MAX,
        }
    }

    fn max_sleep(&self) -> Duration {
        MAX_SLEEP
    }

    /// One SMTP session per round.
    async fn end_round(&self) {
        self.transport.close().await;
    }
}
