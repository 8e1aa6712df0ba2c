//! The `status --json` document, also `GET /v1/status`: every connection and pipeline with its
//! health and state.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{ConnectionId, EmailAddress, PipelineId, Position, ProviderId};
use crate::store::{Connection, Pipeline};

/// The `status --json` document. Its shape is a promise to scripts: fields are only ever added.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusReport {
    pub version: u32,
    pub generated_at: DateTime<Utc>,
    pub connections: Vec<ConnectionStatusJson>,
    pub pipelines: Vec<PipelineStatusJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionStatusJson {
    pub id: ConnectionId,
    pub name: String,
    pub provider: ProviderId,
    pub owner: EmailAddress,
    pub account: Option<String>,
    pub status: crate::domain::ConnectionStatus,
    pub reason: Option<String>,
    pub since: DateTime<Utc>,
    pub last_check: Option<DateTime<Utc>>,
    pub next_check: DateTime<Utc>,
    /// Why checks skip it (its stored tokens cannot be opened); null normally.
    pub set_aside: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PipelineStatusJson {
    pub id: PipelineId,
    pub name: String,
    pub state: crate::domain::PipelineState,
    pub position: Option<Position>,
    pub paused_at_position: Option<Position>,
    pub paused_at: Option<DateTime<Utc>>,
    pub paused_by: Option<crate::domain::PausedBy>,
    pub connections: Vec<ConnectionId>,
}

impl StatusReport {
    pub fn new(connections: Vec<Connection>, pipelines: Vec<Pipeline>, now: DateTime<Utc>) -> Self {
        Self {
            version: 1,
            generated_at: now,
            connections: connections
                .into_iter()
                .map(|c| ConnectionStatusJson {
                    id: c.id,
                    name: c.name,
                    provider: c.provider,
                    owner: c.owner,
                    account: c.account,
                    status: c.status,
                    reason: c.reason,
                    since: c.since,
                    last_check: c.last_check_at,
                    next_check: c.next_check_at,
                    set_aside: c.set_aside,
                })
                .collect(),
            pipelines: pipelines
                .into_iter()
                .map(|p| PipelineStatusJson {
                    id: p.id,
                    name: p.name,
                    state: p.state,
                    position: p.position,
                    paused_at_position: p.paused_at_position,
                    paused_at: p.paused_at,
                    paused_by: p.paused_by,
                    connections: p.connections,
                })
                .collect(),
        }
    }
}
