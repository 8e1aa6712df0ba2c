//! What can be done to a pipeline, for every way in (the command line and the platform's API):
//! each action is one function here, over the store's transactions.

use chrono::{DateTime, Utc};

use crate::connections::Added;
use crate::domain::{ConnectionId, Name, PipelineId, Position};
use crate::store::{NewPipeline, Pipeline, PipelineFilter, PositionUpdate, Store, StoreError};

#[derive(Debug)]
pub struct AddPipeline {
    pub name: Name,
    pub connections: Vec<ConnectionId>,
    pub position: Option<Position>,
    /// The platform's own id: adding again with the same one gives back the first.
    pub external_id: Option<String>,
}

/// The pipeline with this external id, if there is one.
pub async fn by_external_id(
    store: &dyn Store,
    external_id: &str,
) -> Result<Option<PipelineId>, StoreError> {
    let filter = PipelineFilter {
        external_id: Some(external_id.to_owned()),
        ..Default::default()
    };
    let found = store.list_pipelines(&filter, None, 1).await?;
    Ok(found.into_iter().next().map(|p| p.id))
}

/// Registers a pipeline; every connection it names must exist.
pub async fn add(
    store: &dyn Store,
    new: AddPipeline,
    now: DateTime<Utc>,
) -> Result<Added<PipelineId>, StoreError> {
    if let Some(ext) = &new.external_id
        && let Some(id) = by_external_id(store, ext).await?
    {
        return Ok(Added::Existing(id));
    }
    let external_id = new.external_id.clone();
    let added = store
        .add_pipeline(
            NewPipeline {
                name: new.name.into(),
                connections: new.connections,
                position: new.position,
                external_id: new.external_id,
            },
            now,
        )
        .await;
    match (added, external_id) {
        (Ok(id), _) => Ok(Added::Created(id)),
        (Err(StoreError::ExternalIdTaken(_)), Some(ext)) => by_external_id(store, &ext)
            .await?
            .map(Added::Existing)
            .ok_or(StoreError::ExternalIdTaken(ext)),
        (Err(e), _) => Err(e),
    }
}

/// How far a pipeline got. A paused pipeline stays paused, at the position it paused at.
pub async fn report_position(
    store: &dyn Store,
    id: &PipelineId,
    position: &Position,
    now: DateTime<Utc>,
) -> Result<Pipeline, StoreError> {
    store.set_position(id, position, now).await
}

/// Many pipelines' positions in one write; returns the ids that name no pipeline.
pub async fn report_positions(
    store: &dyn Store,
    updates: &[PositionUpdate],
    now: DateTime<Utc>,
) -> Result<Vec<PipelineId>, StoreError> {
    store.set_positions(updates, now).await
}

/// The platform pauses a pipeline for its own reasons; credwatch never lifts such a pause.
pub async fn pause(
    store: &dyn Store,
    id: &PipelineId,
    reason: Option<&Name>,
    now: DateTime<Utc>,
) -> Result<Pipeline, StoreError> {
    store
        .pause_pipeline(id, reason.map(Name::as_str), now)
        .await?;
    store.pipeline(id).await
}

/// Lifts the platform's pause; refused while a connection of the pipeline is broken.
pub async fn resume(
    store: &dyn Store,
    id: &PipelineId,
    now: DateTime<Utc>,
) -> Result<Pipeline, StoreError> {
    store.resume_pipeline(id, now).await?;
    store.pipeline(id).await
}

pub async fn remove(store: &dyn Store, id: &PipelineId) -> Result<(), StoreError> {
    store.remove_pipeline(id).await
}
