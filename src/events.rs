//! What the platform is told: one typed event per change it acts on, written in the
//! transaction of the change, then read from the feed (`GET /v1/events`) or delivered to its
//! webhooks. No token is ever part of an event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Category, ConnectionId, ConnectionStatus, EmailAddress, PausedBy, PipelineId, Position,
    ProviderId,
};

/// An event's kind and what it says (`{"type": "connection.broken", "data": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A connection was stored.
    #[serde(rename = "connection.created")]
    ConnectionCreated {
        connection: ConnectionId,
        provider: ProviderId,
        name: String,
        owner: EmailAddress,
    },
    /// The grant is gone; its pipelines are paused and its owner was asked to reauthorize.
    #[serde(rename = "connection.broken")]
    ConnectionBroken {
        connection: ConnectionId,
        provider: ProviderId,
        category: Category,
        /// What happened, in words for the owner.
        reason: String,
        since: DateTime<Utc>,
    },
    /// A healthy connection failed in a way that may pass; it is retried with backoff.
    #[serde(rename = "connection.degraded")]
    ConnectionDegraded {
        connection: ConnectionId,
        provider: ProviderId,
        category: Category,
        since: DateTime<Utc>,
    },
    /// Healthy again after a degraded or broken spell (never sent for routine good checks).
    #[serde(rename = "connection.recovered")]
    ConnectionRecovered {
        connection: ConnectionId,
        provider: ProviderId,
        was: ConnectionStatus,
        /// When the spell began.
        since: DateTime<Utc>,
    },
    /// Its owner authorized it again: new tokens, healthy, its pipelines resumed.
    #[serde(rename = "connection.reauthorized")]
    ConnectionReauthorized {
        connection: ConnectionId,
        provider: ProviderId,
    },
    /// Its refresh token reaches a fixed end soon; the owner was told.
    #[serde(rename = "connection.expiring_soon")]
    ConnectionExpiringSoon {
        connection: ConnectionId,
        provider: ProviderId,
        refresh_expires_at: DateTime<Utc>,
    },
    #[serde(rename = "connection.deleted")]
    ConnectionDeleted {
        connection: ConnectionId,
        provider: ProviderId,
    },
    /// Stop the pipeline: credwatch paused it (a connection broke) or the platform did.
    #[serde(rename = "pipeline.paused")]
    PipelinePaused {
        pipeline: PipelineId,
        /// Its position when it paused.
        position: Option<Position>,
        /// The broken connection, when credwatch paused it.
        connection: Option<ConnectionId>,
        reason: Option<String>,
        paused_by: PausedBy,
    },
    /// Start the pipeline again, from `resume_from`.
    #[serde(rename = "pipeline.resumed")]
    PipelineResumed {
        pipeline: PipelineId,
        resume_from: Option<Position>,
        /// The connection whose healing resumed it, when credwatch did.
        connection: Option<ConnectionId>,
        gap_started_at: Option<DateTime<Utc>>,
        gap_ended_at: DateTime<Utc>,
    },
    /// Something for the operator: a provider refuses our client, tokens cannot be opened.
    #[serde(rename = "provider.alert")]
    ProviderAlert {
        provider: ProviderId,
        kind: String,
        detail: String,
    },
}

/// Every event type, as `types=` and `[[webhooks]] events` name them.
pub const TYPES: &[&str] = &[
    "connection.created",
    "connection.broken",
    "connection.degraded",
    "connection.recovered",
    "connection.reauthorized",
    "connection.expiring_soon",
    "connection.deleted",
    "pipeline.paused",
    "pipeline.resumed",
    "provider.alert",
];

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::ConnectionCreated { .. } => "connection.created",
            Event::ConnectionBroken { .. } => "connection.broken",
            Event::ConnectionDegraded { .. } => "connection.degraded",
            Event::ConnectionRecovered { .. } => "connection.recovered",
            Event::ConnectionReauthorized { .. } => "connection.reauthorized",
            Event::ConnectionExpiringSoon { .. } => "connection.expiring_soon",
            Event::ConnectionDeleted { .. } => "connection.deleted",
            Event::PipelinePaused { .. } => "pipeline.paused",
            Event::PipelineResumed { .. } => "pipeline.resumed",
            Event::ProviderAlert { .. } => "provider.alert",
        }
    }

    /// The connection it is about, if any.
    pub fn connection(&self) -> Option<&ConnectionId> {
        match self {
            Event::ConnectionCreated { connection, .. }
            | Event::ConnectionBroken { connection, .. }
            | Event::ConnectionDegraded { connection, .. }
            | Event::ConnectionRecovered { connection, .. }
            | Event::ConnectionReauthorized { connection, .. }
            | Event::ConnectionExpiringSoon { connection, .. }
            | Event::ConnectionDeleted { connection, .. } => Some(connection),
            Event::PipelinePaused { connection, .. }
            | Event::PipelineResumed { connection, .. } => connection.as_ref(),
            Event::ProviderAlert { .. } => None,
        }
    }

    pub fn pipeline(&self) -> Option<&PipelineId> {
        match self {
            Event::PipelinePaused { pipeline, .. } | Event::PipelineResumed { pipeline, .. } => {
                Some(pipeline)
            }
            _ => None,
        }
    }

    /// Events of one key are delivered in the order they happened: a connection's (with the
    /// pauses and resumes it causes), a pipeline's own, or a provider's.
    pub fn order_key(&self) -> String {
        match (self.connection(), self.pipeline(), self) {
            (Some(c), _, _) => c.to_string(),
            (None, Some(p), _) => p.to_string(),
            (_, _, Event::ProviderAlert { provider, .. }) => format!("provider:{provider}"),
            _ => String::new(),
        }
    }
}

/// An event as stored: where it is in the log, when, and the connection's platform ids then.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub external_id: Option<String>,
    /// The connection's metadata (a JSON object, as text).
    pub metadata: Option<String>,
    pub event: Event,
}

/// An event as the platform gets it, on the feed and in a webhook's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope {
    /// Unique and sortable: later events have greater ids. A webhook's `webhook-id`.
    pub id: String,
    pub timestamp: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
    /// The connection's `external_id` when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The connection's metadata when it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

const ID_PREFIX: &str = "evt_";

/// An event's id from its place in the log: fixed width, so ids sort as the log does.
pub fn id_of(seq: i64) -> String {
    format!("{ID_PREFIX}{seq:016}")
}

/// The place in the log an id names.
pub fn seq_of(id: &str) -> Option<i64> {
    id.strip_prefix(ID_PREFIX)?
        .parse()
        .ok()
        .filter(|s: &i64| *s >= 0)
}

impl From<Stored> for Envelope {
    fn from(s: Stored) -> Self {
        Envelope {
            id: id_of(s.seq),
            timestamp: s.at,
            metadata: s
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            external_id: s.external_id,
            event: s.event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_as_the_log_and_parse_back() {
        assert!(id_of(9) < id_of(10));
        assert!(id_of(99_999) < id_of(100_000));
        assert_eq!(seq_of(&id_of(42)), Some(42));
        assert_eq!(seq_of("evt_x"), None);
        assert_eq!(seq_of("42"), None);
    }

    #[test]
    fn every_type_is_listed_and_round_trips() {
        let e = Event::PipelineResumed {
            pipeline: PipelineId::generate(),
            resume_from: Some("cursor=7".parse().unwrap()),
            connection: None,
            gap_started_at: None,
            gap_ended_at: Utc::now(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(
            text.starts_with("{\"type\":\"pipeline.resumed\",\"data\":{"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        assert!(TYPES.contains(&e.type_name()));
        assert_eq!(TYPES.len(), 10);
    }
}
