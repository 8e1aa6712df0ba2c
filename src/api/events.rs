//! The event feed: what happened, in order, from a cursor; with `wait`, held open until
//! something does (a long poll), for a platform that takes no inbound HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::input::{Params, Seconds};
use super::{ApiError, ApiState, Problem};
use crate::events::{self, Envelope};

/// The longest a long poll is held.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting poll looks again for events other replicas wrote.
const RELOOK: Duration = Duration::from_secs(1);

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// In the order they happened.
    events: Vec<Envelope>,
    /// Pass as `after` to continue; the same cursor when nothing came.
    next: String,
}

/// Events after `after` (from the start when left out), of the given `types`, oldest first.
/// With `wait` (up to 60 s) and nothing to answer yet, the call waits for the next event.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    params(
        ("after" = Option<String>, Query, description = "An event id: answer only later events"),
        ("types" = Option<String>, Query, description = "Comma-separated event types (all when left out)"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 100"),
        ("wait" = Option<String>, Query, description = "Hold the call up to this long (seconds or \"30s\", at most 60 s) until an event comes"),
    ),
    responses(
        (status = 200, description = "OK", body = EventPage),
        (status = 401, description = "unauthorized: no API key, or not a configured one", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid-field: the problem names the field", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    params: Params,
) -> Result<Json<EventPage>, ApiError> {
    params.only(&["after", "types", "limit", "wait"])?;
    let after = match params.text("after") {
        None | Some("") => 0,
        Some(id) => events::seq_of(id).ok_or_else(|| {
            ApiError::invalid("after", "expected an event id such as evt_0000000000000042")
        })?,
    };
    let types: Vec<String> = match params.text("types") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                if events::TYPES.contains(&t) {
                    Ok(t.to_owned())
                } else {
                    Err(ApiError::invalid(
                        "types",
                        format!("{t:?} is not one of: {}", events::TYPES.join(", ")),
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = super::input::page_size(&params)?;
    let wait = match params.parsed::<Seconds>("wait")? {
        Some(Seconds(w)) if w > MAX_WAIT => {
            return Err(ApiError::invalid("wait", "at most 60 s"));
        }
        Some(Seconds(w)) => w,
        None => Duration::ZERO,
    };
    // Within the call's own deadline, so a long poll answers before the request times out.
    let limit_by_request = state
        .current()
        .config
        .api
        .request_timeout
        .saturating_sub(Duration::from_secs(1));
    let until = tokio::time::Instant::now() + wait.min(limit_by_request);
    let store = state.current().checker.store().clone();
    let committed = store.committed();
    loop {
        // Listening before looking: a commit between the two is not missed.
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let found = store.events_after(after, &types, limit).await?;
        let now = tokio::time::Instant::now();
        if !found.is_empty() || now >= until || state.shutdown.is_cancelled() {
            let next = found.last().map_or(after, |e| e.seq);
            return Ok(Json(EventPage {
                events: found.into_iter().map(Envelope::from).collect(),
                next: events::id_of(next),
            }));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(until.min(now + RELOOK)) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
}
