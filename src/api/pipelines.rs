//! Pipelines: registered, listed, paused and resumed by the platform, and their positions, one
//! at a time or many in one call (the hot path of a busy platform).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connections::Page;
use super::input::{self, OptionalJson, Params};
use super::{ApiError, ApiJson, ApiState, Problem};
use crate::domain::{ConnectionId, Name, PausedBy, PipelineId, PipelineState, Position};
use crate::pipelines::AddPipeline;
use crate::store::{Pipeline, PipelineEvent, PipelineFilter, PositionUpdate};

/// Positions one `POST /v1/positions` takes at most.
const MAX_BATCH: usize = 5000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPipeline {
    name: Name,
    /// The connections it reads or writes through; it is paused while any is broken.
    connections: Vec<ConnectionId>,
    /// Its current position (opaque to credwatch: a cursor, an offset, a timestamp).
    #[serde(default)]
    position: Option<Position>,
    /// The platform's own id: creating again with the same one answers the first pipeline.
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PipelineView {
    id: PipelineId,
    name: String,
    state: PipelineState,
    position: Option<Position>,
    position_updated_at: Option<DateTime<Utc>>,
    /// Where to resume from: the position it paused at while paused, its position otherwise.
    resume_from: Option<Position>,
    paused_at_position: Option<Position>,
    paused_at: Option<DateTime<Utc>>,
    paused_by: Option<PausedBy>,
    pause_reason: Option<String>,
    /// While paused, how long the data gap is so far (seconds).
    gap_seconds: Option<i64>,
    connections: Vec<ConnectionId>,
    created_at: DateTime<Utc>,
    external_id: Option<String>,
    /// Only when one pipeline is asked for: its latest pauses and resumes, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    events: Option<Vec<PipelineEvent>>,
}

impl From<Pipeline> for PipelineView {
    fn from(p: Pipeline) -> Self {
        let paused = p.state == PipelineState::Paused;
        Self {
            resume_from: if paused {
                p.paused_at_position.clone()
            } else {
                p.position.clone()
            },
            gap_seconds: p
                .paused_at
                .filter(|_| paused)
                .map(|at| (Utc::now() - at).num_seconds().max(0)),
            id: p.id,
            name: p.name,
            state: p.state,
            position: p.position,
            position_updated_at: p.position_updated_at,
            paused_at_position: p.paused_at_position,
            paused_at: p.paused_at,
            paused_by: p.paused_by,
            pause_reason: p.pause_reason,
            connections: p.connections,
            created_at: p.created_at,
            external_id: p.external_id,
            events: None,
        }
    }
}

/// Registers a pipeline. With an `external_id` already used, answers the pipeline that has it
/// (200) and writes nothing.
#[utoipa::path(
    post,
    path = "/v1/pipelines",
    operation_id = "createPipeline",
    tag = "pipelines",
    request_body(content = NewPipeline, content_type = "application/json"),
    responses(
        (status = 201, body = PipelineView, description = "Created"),
        (status = 200, body = PipelineView, description = "A pipeline with this external_id already existed"),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    ApiJson(new): ApiJson<NewPipeline>,
) -> Result<Response, ApiError> {
    if new.connections.is_empty() {
        return Err(ApiError::invalid("connections", "at least one connection"));
    }
    let external_id = input::external_id("external_id", new.external_id)?;
    let current = state.current();
    let store = current.checker.store();
    let added = crate::pipelines::add(
        store.as_ref(),
        AddPipeline {
            name: new.name,
            connections: new.connections,
            position: new.position,
            external_id,
        },
        Utc::now(),
    )
    .await
    .map_err(|e| match e {
        // A connection named in the body, not the resource of the path: the field is wrong.
        crate::store::StoreError::ConnectionNotFound(id) => {
            ApiError::invalid("connections", format!("no connection with id {id}"))
        }
        e => e.into(),
    })?;
    let view = PipelineView::from(store.pipeline(added.id()).await?);
    Ok(super::connections::added(&added, "pipelines", view))
}

/// Pipelines in id order, a page at a time, filtered by any of state, connection and
/// external_id.
#[utoipa::path(
    get,
    path = "/v1/pipelines",
    operation_id = "listPipelines",
    tag = "pipelines",
    params(
        ("state" = Option<PipelineState>, Query),
        ("connection" = Option<String>, Query),
        ("external_id" = Option<String>, Query),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "OK", body = Page<PipelineView>),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Params,
) -> Result<Json<Page<PipelineView>>, ApiError> {
    params.only(&["state", "connection", "external_id", "limit", "cursor"])?;
    let filter = PipelineFilter {
        state: params.parsed("state")?,
        connection: params.parsed("connection")?,
        external_id: params.text("external_id").map(str::to_owned),
    };
    let limit = input::page_size(&params)?;
    let after: Option<PipelineId> = params.parsed("cursor")?;
    let current = state.current();
    let read = current
        .checker
        .store()
        .list_pipelines(&filter, after.as_ref(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        read,
        limit,
        |p| p.id.to_string(),
        PipelineView::from,
    )))
}

/// One pipeline: its state, its position and where to resume from, who paused it and why, the
/// data gap so far, and its latest pauses and resumes.
#[utoipa::path(
    get,
    path = "/v1/pipelines/{id}",
    operation_id = "getPipeline",
    tag = "pipelines",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "OK", body = PipelineView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let id: PipelineId = input::id("pipeline", &id)?;
    let current = state.current();
    let store = current.checker.store();
    let mut view = PipelineView::from(store.pipeline(&id).await?);
    view.events = Some(store.pipeline_events(&id, 10).await?);
    Ok(Json(view))
}

#[utoipa::path(
    delete,
    path = "/v1/pipelines/{id}",
    operation_id = "deletePipeline",
    tag = "pipelines",
    params(("id" = String, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: PipelineId = input::id("pipeline", &id)?;
    crate::pipelines::remove(state.current().checker.store().as_ref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionReport {
    position: Position,
}

/// How far the pipeline got. A paused pipeline stays paused at the position it paused at.
#[utoipa::path(
    put,
    path = "/v1/pipelines/{id}/position",
    operation_id = "setPosition",
    tag = "pipelines",
    params(("id" = String, Path)),
    request_body(content = PositionReport, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = PipelineView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn position(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<PositionReport>,
) -> Result<Json<PipelineView>, ApiError> {
    let id: PipelineId = input::id("pipeline", &id)?;
    let p = crate::pipelines::report_position(
        state.current().checker.store().as_ref(),
        &id,
        &report.position,
        Utc::now(),
    )
    .await?;
    Ok(Json(p.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PositionItem {
    pipeline: PipelineId,
    position: Position,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Positions {
    /// Up to 5000, recorded in one write.
    positions: Vec<PositionItem>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PositionsRecorded {
    recorded: usize,
    /// Ids that name no pipeline; the other positions were recorded.
    unknown: Vec<PipelineId>,
}

/// Many pipelines' positions in one call, recorded in one write.
#[utoipa::path(
    post,
    path = "/v1/positions",
    operation_id = "recordPositions",
    tag = "pipelines",
    request_body(content = Positions, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = PositionsRecorded),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn positions(
    State(state): State<Arc<ApiState>>,
    ApiJson(batch): ApiJson<Positions>,
) -> Result<Json<PositionsRecorded>, ApiError> {
    if batch.positions.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "positions",
            format!("at most {MAX_BATCH} in one call"),
        ));
    }
    let updates: Vec<PositionUpdate> = batch
        .positions
        .into_iter()
        .map(|p| PositionUpdate {
            pipeline: p.pipeline,
            position: p.position,
        })
        .collect();
    let unknown = crate::pipelines::report_positions(
        state.current().checker.store().as_ref(),
        &updates,
        Utc::now(),
    )
    .await?;
    Ok(Json(PositionsRecorded {
        recorded: updates.len() - unknown.len(),
        unknown,
    }))
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    #[serde(default)]
    reason: Option<Name>,
}

/// Pauses the pipeline for the platform's own reasons; credwatch never lifts such a pause.
#[utoipa::path(
    post,
    path = "/v1/pipelines/{id}/pause",
    operation_id = "pausePipeline",
    tag = "pipelines",
    params(("id" = String, Path)),
    request_body(content = Option<PauseRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "OK", body = PipelineView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pause(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    OptionalJson(request): OptionalJson<PauseRequest>,
) -> Result<Json<PipelineView>, ApiError> {
    let id: PipelineId = input::id("pipeline", &id)?;
    let request = request.unwrap_or_default();
    let p = crate::pipelines::pause(
        state.current().checker.store().as_ref(),
        &id,
        request.reason.as_ref(),
        Utc::now(),
    )
    .await?;
    Ok(Json(p.into()))
}

/// Lifts the platform's pause. Refused (409 connection-broken) while one of its connections is
/// broken: credwatch lifts that pause itself once the connection is reauthorized.
#[utoipa::path(
    post,
    path = "/v1/pipelines/{id}/resume",
    operation_id = "resumePipeline",
    tag = "pipelines",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "OK", body = PipelineView),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not-found: no such id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A conflict: the problem type says which", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<PipelineView>, ApiError> {
    let id: PipelineId = input::id("pipeline", &id)?;
    let p =
        crate::pipelines::resume(state.current().checker.store().as_ref(), &id, Utc::now()).await?;
    Ok(Json(p.into()))
}

/// What `credwatch status --json` prints: every connection and pipeline.
#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "getStatus",
    tag = "pipelines",
    responses(
        (status = 200, description = "OK", body = crate::status::StatusReport),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn status(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<crate::status::StatusReport>, ApiError> {
    let current = state.current();
    let store = current.checker.store();
    let report = crate::status::StatusReport::new(
        store.connections().await?,
        store.pipelines().await?,
        Utc::now(),
    );
    Ok(Json(report))
}
