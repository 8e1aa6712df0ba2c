//! Checking one connection: refresh it (persisting rotated tokens before anything else), probe
//! it with the fresh access token, classify what came back, and apply the verdict through the
//! store (`apply`). When the refresh is the whole check, its tokens go with the verdict, in one
//! write: nothing happens between them.

pub mod alerts;
mod apply;
mod http;
mod limits;
mod lost;
mod redact;
mod report;
pub mod schedule;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::classify::{Classification, Outcome, TransportFailure, TransportKind, classify};
use crate::config::{
    AccountSource, Config, LimitsConfig, NoticesConfig, ProviderConfig, ScheduleConfig,
};
use crate::domain::{
    Category, ConnectionId, ConnectionStatus, Consequence, EmailAddress, Phase, ProviderId,
};
use crate::store::{
    ALERT_CLIENT_MISCONFIGURED, CheckResult, ClaimOutcome, Claimed, Lease, Rotation, Store,
    StoreError, Transition,
};
use crate::tokens::TokenSet;

pub use http::{HttpClient, OAuthClient, code_request, oauth_client};
pub use limits::Pacer;
use lost::Lost;
pub use report::{Report, ReportOutcome};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Names one worker in leases and in the check history: role, host, process, and a random
/// suffix so a restarted process with a recycled pid is not mistaken for its predecessor.
pub fn instance_id(role: &str) -> String {
    use rand::Rng;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let suffix: u32 = rand::thread_rng().r#gen();
    format!("{role}@{host}:{}:{suffix:08x}", std::process::id())
}

/// A provider as the checker uses it: its config, its oauth2 client and its limits.
pub struct Provider {
    pub config: ProviderConfig,
    /// None for a provider of keys or passwords: nothing to refresh or sign in to.
    oauth: Option<OAuthClient>,
    /// Its refresh request, built once.
    refresh: Option<http::RefreshTemplate>,
    permits: Semaphore,
    pacer: Pacer,
    /// An open client-misconfigured alert: checks are held back but for one trial at a time.
    held: AtomicBool,
}

impl Provider {
    fn new(config: ProviderConfig) -> Self {
        let oauth = config.oauth().map(oauth_client);
        Self {
            refresh: oauth.as_ref().and_then(http::RefreshTemplate::new),
            oauth,
            permits: Semaphore::new(config.max_concurrent as usize),
            pacer: Pacer::new(config.requests_per_second),
            held: AtomicBool::new(false),
            config,
        }
    }

    /// oauth2's client for this provider (token and authorize endpoints, client auth), with
    /// the provider's OAuth settings; none for keys and passwords.
    pub fn oauth(&self) -> Option<(&OAuthClient, &crate::config::OAuthSettings)> {
        self.oauth.as_ref().zip(self.config.oauth())
    }

    pub fn id(&self) -> &ProviderId {
        &self.config.id
    }

    /// The request that refreshes with `token`, as oauth2 builds it.
    fn refresh_request(&self, token: &SecretString) -> Option<oauth2::HttpRequest> {
        use secrecy::ExposeSecret;
        match (&self.refresh, &self.oauth) {
            (Some(template), _) => template.request(token),
            (None, Some(client)) => http::refresh_request(client, token.expose_secret()),
            (None, None) => None,
        }
    }

    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }
}

pub struct Checker {
    store: Arc<dyn Store>,
    http: HttpClient,
    providers: BTreeMap<ProviderId, Arc<Provider>>,
    global: Semaphore,
    schedule: ScheduleConfig,
    limits: LimitsConfig,
    notices: NoticesConfig,
    /// How long events are kept, and when old ones were last removed.
    retention: Duration,
    pruned: std::sync::Mutex<Option<tokio::time::Instant>>,
    operator: Option<EmailAddress>,
    instance: String,
    /// Woken when a check queued a notice, so the mailer sends it without polling.
    outbox: Arc<tokio::sync::Notify>,
    /// Refreshed token sets whose write failed and is being retried.
    unstored: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Checker {
    /// `instance` names this worker in leases and in the check history.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        instance: String,
    ) -> Result<Self, CheckError> {
        Self::with_metrics(
            config,
            store,
            instance,
            Arc::new(crate::metrics::Metrics::new()),
        )
    }

    /// A checker that counts into `metrics` (kept across config reloads).
    pub fn with_metrics(
        config: &Config,
        store: Arc<dyn Store>,
        instance: String,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, CheckError> {
        Ok(Self {
            store,
            http: HttpClient::new(&config.limits)?,
            providers: config
                .providers
                .values()
                .map(|p| (p.id.clone(), Arc::new(Provider::new(p.clone()))))
                .collect(),
            global: Semaphore::new(config.limits.max_concurrent_checks as usize),
            schedule: config.schedule.clone(),
            limits: config.limits.clone(),
            notices: config.notices.clone(),
            retention: config.events.retention,
            pruned: std::sync::Mutex::new(None),
            operator: config.operator_email.clone(),
            instance,
            outbox: Arc::new(tokio::sync::Notify::new()),
            unstored: Arc::default(),
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Notified whenever a check queues a notice.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    /// How many refreshed token sets are being retried into the store right now.
    pub fn unstored(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.unstored.clone()
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// The one HTTP client every call to a provider goes through.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    pub fn provider(&self, id: &ProviderId) -> Option<&Arc<Provider>> {
        self.providers.get(id)
    }

    pub fn operator(&self) -> Option<&EmailAddress> {
        self.operator.as_ref()
    }

    pub fn notices(&self) -> &NoticesConfig {
        &self.notices
    }

    /// How long the event log keeps events, when it is time to remove old ones (at most
    /// every ten minutes: it takes a write).
    pub fn retention_due(&self) -> Option<Duration> {
        let mut pruned = self.pruned.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        if pruned.is_some_and(|at| now.duration_since(at) < Duration::from_secs(600)) {
            return None;
        }
        *pruned = Some(now);
        Some(self.retention)
    }

    pub fn schedule(&self) -> &ScheduleConfig {
        &self.schedule
    }

    pub fn lease(&self, now: DateTime<Utc>) -> Lease {
        Lease {
            owner: self.instance.clone(),
            until: now + TimeDelta::from_std(self.limits.lease).unwrap_or(TimeDelta::MAX),
        }
    }

    /// How many due connections of a provider to claim at once: no more than its rate can get
    /// through well inside one lease, so none waits in our queue until its lease runs out.
    pub fn batch_size(&self, provider: &Provider) -> u32 {
        let per_lease = provider.config.requests_per_second * self.limits.lease.as_secs_f64();
        // Two requests per check, and a third of the lease to spare.
        let fits = (per_lease / 3.0).floor();
        (fits.min(f64::from(self.schedule.batch_size)) as u32).max(1)
    }

    /// Reads which providers are held back by an open client-misconfigured alert.
    pub async fn refresh_holds(&self) -> Result<Vec<crate::store::ProviderAlert>, StoreError> {
        let alerts: Vec<_> = self
            .store
            .open_provider_alerts()
            .await?
            .into_iter()
            .filter(|a| a.kind == ALERT_CLIENT_MISCONFIGURED)
            .collect();
        for p in self.providers.values() {
            p.set_held(alerts.iter().any(|a| &a.provider == p.id()));
        }
        Ok(alerts)
    }

    /// `credwatch check ID`: claims the connection whether due or not, and checks it.
    pub async fn check_now(
        &self,
        id: &ConnectionId,
        cancel: &CancellationToken,
    ) -> Result<Report, CheckError> {
        let now = Utc::now();
        match self.store.claim(id, &self.lease(now), now).await? {
            ClaimOutcome::Claimed(claimed) => self.check(*claimed, cancel).await,
            ClaimOutcome::Busy { owner } => {
                let c = self.store.connection(id).await?;
                Ok(Report {
                    connection: c.id,
                    name: c.name,
                    provider: c.provider,
                    outcome: ReportOutcome::Skipped {
                        why: format!("already being checked by {owner}"),
                    },
                })
            }
        }
    }

    /// Checks a claimed connection and applies the verdict. A claim that cannot be used
    /// (unknown provider, shutting down, lease too short) is released without calling anyone.
    pub async fn check(
        &self,
        claimed: Claimed,
        cancel: &CancellationToken,
    ) -> Result<Report, CheckError> {
        let report = |why: String| Report {
            connection: claimed.connection.id.clone(),
            name: claimed.connection.name.clone(),
            provider: claimed.connection.provider.clone(),
            outcome: ReportOutcome::Skipped { why },
        };
        let Some(provider) = self.providers.get(&claimed.connection.provider).cloned() else {
            self.store.release(&claimed).await?;
            let why = format!(
                "provider {} is not in the config",
                claimed.connection.provider
            );
            return Ok(report(why));
        };
        if claimed.connection.credential_kind != provider.config.auth.kind() {
            // Sending a key as a Bearer token (or the reverse) would show it to the wrong place.
            self.store.release(&claimed).await?;
            return Ok(report(format!(
                "provider {} takes {} credentials, but this connection holds {}: the config changed; \
                 add the connection again",
                provider.id(),
                provider.config.auth.kind(),
                claimed.connection.credential_kind
            )));
        }
        let ready = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            permits = async {
                let global = self.global.acquire().await;
                let own = provider.permits.acquire().await;
                (global, own)
            } => Some(permits),
            // Both semaphores live as long as `self` and are never closed.
        };
        let Some((Ok(_global), Ok(_own))) = ready else {
            self.store.release(&claimed).await?;
            return Ok(report("shutting down".into()));
        };
        // Two requests, each up to the timeout, must end inside the lease: past it another
        // replica may take the connection over, and two refreshes would look like token theft.
        let needed = self.limits.lease_needed();
        let left = (claimed.lease.until - Utc::now())
            .to_std()
            .unwrap_or_default();
        let Some(start_by) = left.checked_sub(needed) else {
            self.store.release(&claimed).await?;
            return Ok(report("its lease ran short before a slot was free".into()));
        };
        let paced = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            ok = provider.pacer.wait_until(tokio::time::Instant::now() + start_by) => Some(ok),
        };
        match paced {
            Some(true) => {}
            Some(false) => {
                self.store.release(&claimed).await?;
                return Ok(report(
                    "the provider's request rate leaves no slot inside its lease".into(),
                ));
            }
            None => {
                self.store.release(&claimed).await?;
                return Ok(report("shutting down".into()));
            }
        }
        let started = tokio::time::Instant::now();
        // The calls and the verdict's write are boxed: inline, their states made every spawned
        // check an 8 KiB future, copied several times over on its way into its task.
        let Some(ran) = Box::pin(self.run(&provider, &claimed)).await? else {
            self.store.release(&claimed).await?;
            return Ok(report(
                "its lease ran short: no call goes out that could end past it".into(),
            ));
        };
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Box::pin(self.apply(&provider, &claimed, ran, latency_ms)).await
    }

    /// The calls: refresh (if there is a refresh token), then probe (if there is a probe URL).
    /// `None` when a call was not sent because the lease would not cover it (see `may_send`).
    async fn run(&self, provider: &Provider, claimed: &Claimed) -> Result<Option<Ran>, CheckError> {
        let rules = &provider.config.rules;
        let conn = &claimed.connection;
        let mut ran = Ran {
            phase: Phase::Refresh,
            verdict: Classification::new(Category::Unknown, "not checked", None),
            generation: claimed.tokens.generation,
            expires_at: conn.access_expires_at,
            refresh_uncertain: None,
            pending: None,
            hold_until: None,
            secrets: redact::Secrets::default(),
            answered: None,
            commit: None,
        };
        ran.secrets.add(&claimed.tokens.access_token);
        if let Some(refresh) = &claimed.tokens.refresh_token {
            ran.secrets.add(refresh);
        }
        if let Some(o) = provider.config.oauth()
            && let Some(secret) = &o.client_secret
        {
            ran.secrets.add_client(&o.client_id, secret);
        }
        if matches!(provider.config.auth, crate::config::ProviderAuth::Basic) {
            // Its HTTP Basic form, as a provider might quote the header back.
            use secrecy::ExposeSecret;
            let stored = claimed.tokens.access_token.expose_secret();
            let (user, password) = stored.split_once(':').unwrap_or((stored, ""));
            ran.secrets
                .add_client(user, &SecretString::from(password.to_owned()));
        }
        let mut access: SecretString = claimed.tokens.access_token.clone();
        // A refresh may name the connection's instance anew (an org moved); the probe follows it.
        let mut instance = claimed.connection.instance_url.clone();
        // Only OAuth connections refresh; a key or a password is checked by the probe alone.
        let refresh = claimed.tokens.refresh_token.as_ref().zip(provider.oauth());
        if let Some((refresh, (_, oauth))) = refresh {
            match self.lost_rotation(provider, oauth, claimed, refresh).await {
                Lost::No => {}
                Lost::NotSent => return Ok(None),
                Lost::Wait(verdict, until) => {
                    ran.verdict = verdict;
                    ran.refresh_uncertain = None;
                    ran.hold_until = Some(until);
                    return Ok(Some(ran));
                }
                Lost::Verdict(verdict) => {
                    // Only a definite answer ends the uncertainty.
                    let definite = verdict.category.consequence() == Consequence::Broken;
                    ran.refresh_uncertain = definite.then_some(false);
                    ran.verdict = verdict;
                    return Ok(Some(ran));
                }
            }
            let request = provider.refresh_request(refresh);
            if !self.may_send(claimed) {
                return Ok(None);
            }
            let outcome = match request {
                Some(request) => self.http.send_token(request, oauth).await,
                None => Outcome::Transport(TransportFailure {
                    kind: TransportKind::Other,
                    message: "could not build the refresh request".into(),
                }),
            };
            ran.answered = Some(tokio::time::Instant::now());
            let mut verdict = classify(Phase::Refresh, &outcome, rules, Utc::now());
            ran.refresh_uncertain = Some(answer_lost(&outcome, &verdict));
            if matches!(verdict.category, Category::Revoked | Category::Expired)
                && oauth.rotates_refresh_tokens
                && let Some(since) = conn.refresh_uncertain_since
            {
                // Our loss, not the owner's doing: the e-mail must not say they withdrew it.
                verdict.category = Category::RotationLost;
                verdict.detail.push_str(&format!(
                    " (a refresh at {} got no answer: the provider probably rotated the refresh \
                     token then, and the new one never reached us)",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            if verdict.category == Category::RateLimited
                && let Some(wait) = verdict.retry_after
            {
                // The token endpoint's limits are the client's, shared by every connection.
                provider
                    .pacer
                    .hold_until(tokio::time::Instant::now() + wait.min(self.schedule.backoff_max));
            }
            let Some(tokens) = verdict.tokens.take() else {
                ran.verdict = verdict;
                return Ok(Some(ran));
            };
            // The new tokens are secrets too: a probe may quote the access token back.
            ran.secrets.add(&tokens.access_token);
            if let Some(refresh) = &tokens.refresh_token {
                ran.secrets.add(refresh);
            }
            if provider.config.probe_url.is_none() {
                // The refresh is the whole check: its tokens are stored with its result, in
                // one write (see `apply`).
                ran.verdict = verdict;
                ran.pending = Some(tokens);
                return Ok(Some(ran));
            }
            let status = verdict.http_status;
            if !self
                .persist_rotation(claimed, &mut ran, &tokens, status)
                .await?
            {
                return Ok(Some(ran));
            }
            access = tokens.access_token.clone();
            instance = tokens.instance_url.clone().or(instance);
        }
        ran.phase = Phase::Probe;
        let instance = instance.as_deref();
        let Some(probe_url) = provider.config.probe_url_for(instance) else {
            // Nothing to call: all we know is the expiry the provider gave.
            ran.verdict = match ran.expires_at {
                Some(at) if at <= Utc::now() => Classification::new(
                    Category::Expired,
                    "the access token has expired and there is no refresh token",
                    None,
                ),
                _ => Classification::new(
                    Category::Healthy,
                    "no refresh token and no probe_url: only the expiry date was checked",
                    None,
                ),
            };
            return Ok(Some(ran));
        };
        if claimed.tokens.refresh_token.is_some() {
            provider.pacer.wait().await;
        }
        if !self.may_send(claimed) {
            return Ok(None);
        }
        let outcome = self.http.probe(&provider.config, &probe_url, &access).await;
        ran.verdict = classify(Phase::Probe, &outcome, rules, Utc::now());
        // An answer that names no account did not come for our credentials (Zendesk answers
        // an anonymous user); whether they are dead is not said, so the operator is told.
        if ran.verdict.category == Category::Healthy
            && let AccountSource::Probe(pointer) = &provider.config.account_from
            && let Outcome::Response(r) = &outcome
            && crate::account::in_answer(pointer, &r.body).is_none()
        {
            ran.verdict = Classification::new(
                Category::Unknown,
                format!(
                    "HTTP {}: the probe's answer names no account at {pointer}",
                    r.status
                ),
                Some(r.status),
            );
        }
        Ok(Some(ran))
    }

    /// The last look before a call goes out, after every wait (a slot, the pacer, a process
    /// stopped and continued): the call must end, at its timeout, inside our lease with a
    /// margin. Past the lease another worker may own the connection and refresh it too, and
    /// two refreshes with one rotating token look like token theft to the provider.
    fn may_send(&self, claimed: &Claimed) -> bool {
        let call = delta(self.limits.request_timeout + self.limits.lease_margin());
        Utc::now()
            .checked_add_signed(call)
            .is_some_and(|until| until <= claimed.lease.until)
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// What the calls of one check found.
struct Ran {
    phase: Phase,
    verdict: Classification,
    generation: i64,
    expires_at: Option<DateTime<Utc>>,
    refresh_uncertain: Option<bool>,
    /// Refreshed tokens not stored yet: the refresh was the whole check.
    pending: Option<TokenSet>,
    /// Nothing was decided: the connection stays as it is until then.
    hold_until: Option<DateTime<Utc>>,
    /// Every secret the calls carried or got back, to keep out of the detail.
    secrets: redact::Secrets,
    /// When the refresh's answer arrived, and how long after it its tokens were committed.
    answered: Option<tokio::time::Instant>,
    commit: Option<Duration>,
}

impl Ran {
    /// The refreshed tokens are committed now.
    fn committed(&mut self) {
        self.commit = self.answered.map(|at| at.elapsed());
    }
}

/// Whether the provider may have acted on a refresh whose answer we did not get: the request
/// may have been sent (anything but a failed connect), or a 2xx body was cut off or unreadable.
fn answer_lost(outcome: &Outcome, verdict: &Classification) -> bool {
    match outcome {
        Outcome::Transport(t) => t.kind != TransportKind::Connect,
        Outcome::Response(r) => {
            (200..300).contains(&r.status)
                && verdict.tokens.is_none()
                && verdict.category == Category::Transient
        }
    }
}
