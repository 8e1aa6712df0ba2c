//! What the platform's API asks the store for: filtered pages, updates, hand-outs and batches.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::{
    ConnectionId, ConnectionStatus, EmailAddress, PipelineId, PipelineState, Position, ProviderId,
};

/// Which connections a page lists; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub status: Option<ConnectionStatus>,
    pub provider: Option<ProviderId>,
    pub owner: Option<EmailAddress>,
    pub external_id: Option<String>,
}

/// Which pipelines a page lists; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct PipelineFilter {
    pub state: Option<PipelineState>,
    pub connection: Option<ConnectionId>,
    pub external_id: Option<String>,
}

/// The fields of a connection its platform may change; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub name: Option<String>,
    pub owner: Option<EmailAddress>,
    /// `Some(None)` clears it.
    pub metadata: Option<Option<String>>,
}

/// What a hand-out reads, in one query: the connection's state and its access token, opened
/// (never its refresh token).
#[derive(Debug)]
pub struct Handout {
    pub id: ConnectionId,
    pub provider: ProviderId,
    pub status: ConnectionStatus,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub token_generation: i64,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub last_check_at: Option<DateTime<Utc>>,
    pub next_check_at: DateTime<Utc>,
    pub access_token: SecretString,
}

/// One pipeline's position in a batch.
#[derive(Debug, Clone)]
pub struct PositionUpdate {
    pub pipeline: PipelineId,
    pub position: Position,
}
