//! What the platform's API asks the store for: filtered pages, updates, hand-outs and batches.

use secrecy::SecretString;

use crate::domain::{
    ConnectionId, ConnectionStatus, EmailAddress, PipelineId, PipelineState, Position, ProviderId,
};

use super::Connection;

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

/// A connection with its access token opened (never its refresh token): what a hand-out reads,
/// in one query.
#[derive(Debug)]
pub struct Handout {
    pub connection: Connection,
    pub access_token: SecretString,
}

/// One pipeline's position in a batch.
#[derive(Debug, Clone)]
pub struct PositionUpdate {
    pub pipeline: PipelineId,
    pub position: Position,
}
