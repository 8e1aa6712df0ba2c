//! What a check found and did: the report `credwatch check` prints, and the log line of a change.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Category, ConnectionId, ConnectionStatus, Phase, PipelineId, ProviderId};
use crate::store::{Applied, CheckResult};

/// What one check found and did, for the log and `credwatch check`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub connection: ConnectionId,
    pub name: String,
    pub provider: ProviderId,
    #[serde(flatten)]
    pub outcome: ReportOutcome,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReportOutcome {
    Checked {
        category: Category,
        phase: Phase,
        detail: String,
        http_status: Option<u16>,
        latency_ms: u64,
        before: ConnectionStatus,
        after: ConnectionStatus,
        /// A definitive verdict about tokens someone else had already replaced: not applied.
        stale: bool,
        next_check_at: DateTime<Utc>,
        /// Pipelines this check paused (the connection broke) or resumed (it healed).
        paused: Vec<PipelineId>,
        resumed: Vec<PipelineId>,
        /// From the provider's answer with new tokens to their commit, when it gave some.
        #[serde(skip_serializing_if = "Option::is_none")]
        rotation_commit_ms: Option<u64>,
    },
    Skipped {
        why: String,
    },
}

/// One line when a connection's health changes; routine checks only at debug level.
pub(super) fn log(id: &ConnectionId, p: &ProviderId, r: &CheckResult, a: &Applied) {
    let detail = r.detail.as_str();
    let category = r.category.as_str();
    if a.stale {
        tracing::warn!(connection = %id, provider = %p, category, detail,
            "a definitive answer about tokens that were replaced meanwhile; not applied, checking again");
        return;
    }
    match (a.before, a.after) {
        (before, ConnectionStatus::Broken) if before != ConnectionStatus::Broken => {
            tracing::warn!(connection = %id, provider = %p, category, detail,
                paused = %join(&a.paused), "connection broken; its pipelines are paused")
        }
        (ConnectionStatus::Healthy, ConnectionStatus::Degraded) => {
            tracing::warn!(connection = %id, provider = %p, category, detail, "connection degraded; retrying with backoff")
        }
        (before, ConnectionStatus::Healthy) if before != ConnectionStatus::Healthy => {
            tracing::info!(connection = %id, provider = %p, was = before.as_str(),
                resumed = %join(&a.resumed), "connection healthy again")
        }
        _ => {
            tracing::debug!(connection = %id, provider = %p, category, detail, latency_ms = r.latency_ms, "checked")
        }
    }
}

fn join(ids: &[PipelineId]) -> String {
    let ids: Vec<&str> = ids.iter().map(PipelineId::as_str).collect();
    ids.join(",")
}
