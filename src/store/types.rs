//! What the store reads and writes: connections, pipelines, checks, notices, incidents and
//! reauthorizations, as the rest of the daemon sees them (never as rows).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::domain::text_enum;
use crate::domain::{
    Category, ConnectionId, ConnectionStatus, EmailAddress, PausedBy, Phase, PipelineId,
    PipelineState, Position, ProviderId,
};
use crate::tokens::TokenSet;

/// What `connection add` stores.
#[derive(Debug)]
pub struct NewConnection {
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    pub account: Option<String>,
    pub tokens: TokenSet,
    /// What `tokens` holds: "oauth", "api_key" or "basic" (see `config::ProviderAuth::kind`).
    pub credential_kind: &'static str,
    /// The platform's own id for it, unique.
    pub external_id: Option<String>,
    /// A JSON object, kept as given.
    pub metadata: Option<String>,
}

/// A connection as the rest of the daemon sees it: everything but the tokens.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    pub account: Option<String>,
    pub scopes: Vec<String>,
    pub status: ConnectionStatus,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub has_refresh_token: bool,
    pub token_generation: i64,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub consecutive_failures: u32,
    /// Since when a refresh's answer is missing (it may have rotated the refresh token).
    pub refresh_uncertain_since: Option<DateTime<Utc>>,
    /// Since when a refresh that was sent is unanswered because its worker crashed or stalled
    /// (not merely timed out): the provider most likely rotated the refresh token then.
    pub refresh_interrupted_at: Option<DateTime<Utc>>,
    /// Why checks skip it: its stored tokens cannot be opened. A restart tries it again.
    pub set_aside: Option<String>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub next_check_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub external_id: Option<String>,
    /// The platform's JSON object, as text.
    pub metadata: Option<String>,
    /// "oauth", "api_key" or "basic".
    pub credential_kind: String,
    /// Where this grant's API lives, when its token response said (an https origin).
    pub instance_url: Option<String>,
}

/// A connection's tokens, opened; only the checker and the revocation path ask for these.
#[derive(Debug)]
pub struct StoredTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub generation: i64,
}

#[derive(Debug)]
pub struct NewPipeline {
    pub name: String,
    pub connections: Vec<ConnectionId>,
    pub position: Option<Position>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub id: PipelineId,
    pub name: String,
    pub state: PipelineState,
    pub position: Option<Position>,
    pub position_updated_at: Option<DateTime<Utc>>,
    pub paused_at_position: Option<Position>,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_by: Option<PausedBy>,
    pub pause_reason: Option<String>,
    pub connections: Vec<ConnectionId>,
    pub created_at: DateTime<Utc>,
    pub external_id: Option<String>,
}

/// A pause or a resume, with the position and the data gap it leaves.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub position: Option<Position>,
    pub connection: Option<ConnectionId>,
    pub reason: Option<String>,
    pub gap_started_at: Option<DateTime<Utc>>,
    pub gap_ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub connections: u64,
    pub healthy: u64,
    pub degraded: u64,
    pub broken: u64,
    /// Skipped by checks: their stored tokens cannot be opened.
    pub set_aside: u64,
    pub pipelines: u64,
    pub paused: u64,
}

/// A claim on connections by one worker, until `until`; results commit only while it holds.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// A connection claimed for a check, with its tokens. The claim itself is the record of the
/// attempt (its lease, and the mark that a refresh may go out); the history row is written
/// once, whole, with the result.
#[derive(Debug)]
pub struct Claimed {
    pub connection: Connection,
    pub tokens: StoredTokens,
    /// When the claim was made: the check's start in its history row.
    pub started_at: DateTime<Utc>,
    pub lease: Lease,
    /// Where the store found the row (SQLite's rowid), so that the check's result is written
    /// without looking the id up again; always checked against the id, so a row moved since
    /// (a VACUUM renumbers rowids) only costs the slower write.
    pub row: Option<i64>,
}

#[derive(Debug)]
pub enum ClaimOutcome {
    Claimed(Box<Claimed>),
    /// Another worker holds it until its lease ends.
    Busy {
        owner: String,
    },
}

/// Which due connections a sweep claims.
#[derive(Debug, Clone)]
pub struct DueQuery<'a> {
    pub provider: &'a ProviderId,
    pub now: DateTime<Utc>,
    pub limit: u32,
    /// Told when a claimed connection has to be set aside (its tokens cannot be opened).
    pub operator: Option<&'a EmailAddress>,
}

/// Where a check leaves its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Healthy,
    /// A failure that does not prove the grant gone; a broken connection stays broken.
    Degraded,
    /// A definitive answer; only if the tokens are still the ones we checked.
    Broken,
    /// Nothing about the connection changes (the operator's problem, or a race).
    Unchanged,
}

/// The result of one check, as it is recorded and applied.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub started_at: DateTime<Utc>,
    /// The token generation the verdict is about (after our own rotation, if any).
    pub generation: i64,
    pub phase: Phase,
    pub category: Category,
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    pub detail: String,
    pub transition: Transition,
    pub next_check_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// When the owner's notice of a new incident goes out: later breaks of the same owner's
    /// connections before then share one e-mail.
    pub notify_at: DateTime<Utc>,
    /// The first reminder of a new incident, if reminders are configured.
    pub first_reminder_at: Option<DateTime<Utc>>,
    /// `Some(true)`: the refresh was sent but its answer lost; `Some(false)`: the provider gave
    /// a definite answer about the refresh token; `None`: no refresh was tried.
    pub refresh_uncertain: Option<bool>,
}

/// What a finished check changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub before: ConnectionStatus,
    pub after: ConnectionStatus,
    /// Set when this check opened an incident.
    pub incident_opened: Option<i64>,
    /// Set when this check closed one.
    pub incident_closed: Option<i64>,
    /// A definitive answer about tokens that had already been replaced: not applied.
    pub stale: bool,
    /// Pipelines paused because this check broke the connection.
    pub paused: Vec<PipelineId>,
    /// Pipelines resumed because this check made their last connection healthy.
    pub resumed: Vec<PipelineId>,
}

impl Applied {
    /// A result that changed nothing but the schedule.
    pub fn unchanged(status: ConnectionStatus) -> Self {
        Self {
            before: status,
            after: status,
            incident_opened: None,
            incident_closed: None,
            stale: false,
            paused: Vec::new(),
            resumed: Vec::new(),
        }
    }
}

/// New tokens from a refresh, stored at once (compare-and-swap on the generation).
#[derive(Debug)]
pub struct Rotation<'a> {
    pub expected_generation: i64,
    pub tokens: &'a TokenSet,
    pub now: DateTime<Utc>,
}

text_enum!(
    /// The notices credwatch sends.
    NoticeKind {
        CredentialsExpired => "credentials_expired",
        Reminder => "reminder",
        Reconnected => "reconnected",
        ExpiringSoon => "expiring_soon",
        OperatorAlert => "operator_alert",
        ConnectInvitation => "connect_invitation",
    }
);

/// A notice claimed from the outbox by the mailer.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub kind: NoticeKind,
    pub recipient: EmailAddress,
    pub connection: Option<ConnectionId>,
    pub incident: Option<i64>,
    /// Kind-specific facts fixed when the notice was queued (JSON).
    pub payload: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// One period during which a connection was broken.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub connection: ConnectionId,
    pub category: Category,
    pub detail: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// A reauthorize link, found by the hash of its token.
#[derive(Debug, Clone)]
pub struct ReauthLink {
    pub connection: ConnectionId,
    pub incident: Option<i64>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// An authorization started from a reauthorize page, taken back by the callback.
#[derive(Debug)]
pub struct OAuthSession {
    pub connection: ConnectionId,
    pub link_hash: Vec<u8>,
    pub verifier: SecretString,
}

/// What a successful reauthorization changed.
#[derive(Debug, Clone, Default)]
pub struct Reauthorized {
    pub incident_closed: Option<i64>,
    pub resumed: Vec<PipelineId>,
}

/// The database's side of the metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub connections: Vec<ConnectionCount>,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
}

#[derive(Debug, Clone)]
pub struct ConnectionCount {
    pub provider: String,
    pub status: String,
    pub reason: Option<String>,
    pub count: i64,
}

/// One recorded check, for `connection show` and the operator.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckRecord {
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub instance: String,
    pub phase: Option<Phase>,
    pub category: Option<Category>,
    pub http_status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderAlert {
    pub provider: ProviderId,
    pub kind: String,
    pub detail: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: u32,
}
