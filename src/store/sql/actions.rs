//! What a connection's change of health does to the pipelines that depend on it, inside the
//! transaction that changes it: a broken connection pauses them at their last position, and a
//! pipeline whose connections are all healthy again resumes from there.

use super::events;
use super::*;
use crate::domain::PausedBy;
use crate::events::Event;

impl SqlStore {
    /// Pauses every running pipeline that uses `connection`, recording where it stood.
    pub(super) async fn pause_dependents(
        tx: &mut sqlx::AnyConnection,
        connection: &ConnectionId,
        incident: i64,
        reason: &str,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<Vec<PipelineId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE pipelines SET state = 'paused', paused_at_position = position, paused_at = $1, \
               paused_by = 'credwatch', pause_reason = $2, updated_at = $1 \
             WHERE state = 'running' AND id IN \
               (SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $3) \
             RETURNING id, position",
        )
        .bind(now)
        .bind(reason)
        .bind(connection.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut paused = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            sqlx::query(
                "INSERT INTO pipeline_events (pipeline_id, at, kind, position, connection_id, \
                   incident_id, reason, gap_started_at) \
                 VALUES ($1, $2, 'paused', $3, $4, $5, $6, $2)",
            )
            .bind(&id)
            .bind(now)
            .bind(row.try_get::<Option<String>, _>("position")?)
            .bind(connection.as_str())
            .bind(incident)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            let id: PipelineId = parse(id)?;
            events.push(Event::PipelinePaused {
                pipeline: id.clone(),
                position: opt_parse(row, "position")?,
                connection: Some(connection.clone()),
                reason: Some(reason.to_owned()),
                paused_by: PausedBy::Credwatch,
            });
            paused.push(id);
        }
        paused.sort();
        Ok(paused)
    }

    /// Resumes the pipelines of `connection` that we paused and whose connections are now all
    /// healthy; each resume event records the position and the data gap. A pipeline the
    /// platform paused is left alone.
    pub(super) async fn resume_ready(
        tx: &mut sqlx::AnyConnection,
        connection: &ConnectionId,
        incident: Option<i64>,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<Vec<PipelineId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE pipelines SET state = 'running', paused_at = NULL, paused_by = NULL, \
               pause_reason = NULL, updated_at = $1 \
             WHERE state = 'paused' AND paused_by = 'credwatch' \
               AND id IN (SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM pipeline_connections pc \
                 JOIN connections c ON c.id = pc.connection_id \
                 WHERE pc.pipeline_id = pipelines.id AND c.status != 'healthy') \
             RETURNING id, position, \
               (SELECT at FROM pipeline_events e WHERE e.pipeline_id = pipelines.id \
                  AND e.kind = 'paused' ORDER BY e.id DESC LIMIT 1) AS paused_at",
        )
        .bind(now)
        .bind(connection.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut resumed = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("id")?;
            sqlx::query(
                "INSERT INTO pipeline_events (pipeline_id, at, kind, position, connection_id, \
                   incident_id, gap_started_at, gap_ended_at) \
                 VALUES ($1, $2, 'resumed', $3, $4, $5, $6, $2)",
            )
            .bind(&id)
            .bind(now)
            // Where it resumes from: positions reported during the pause count.
            .bind(row.try_get::<Option<String>, _>("position")?)
            .bind(connection.as_str())
            .bind(incident)
            .bind(row.try_get::<Option<i64>, _>("paused_at")?)
            .execute(&mut *tx)
            .await?;
            let id: PipelineId = parse(id)?;
            events.push(Event::PipelineResumed {
                pipeline: id.clone(),
                resume_from: opt_parse(row, "position")?,
                connection: Some(connection.clone()),
                gap_started_at: opt_time(row.try_get("paused_at")?)?,
                gap_ended_at: from_ms(now)?,
            });
            resumed.push(id);
        }
        resumed.sort();
        Ok(resumed)
    }
}

impl SqlStore {
    pub(super) async fn pause_pipeline_impl(
        &self,
        id: &PipelineId,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        let state: Option<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT state, paused_by FROM pipelines WHERE id = $1{}",
            self.backend.for_update()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (state, paused_by) = state.ok_or_else(|| StoreError::PipelineNotFound(id.clone()))?;
        if paused_by.as_deref() == Some("platform") {
            return Ok(());
        }
        // Our own pause becomes the platform's: it is theirs to lift now, not ours.
        sqlx::query(
            "UPDATE pipelines SET state = 'paused', paused_by = 'platform', pause_reason = $1, \
               paused_at_position = CASE WHEN state = 'running' THEN position ELSE paused_at_position END, \
               paused_at = CASE WHEN state = 'running' THEN $2 ELSE paused_at END, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(reason)
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if state == "running" {
            let position: Option<String> = sqlx::query_scalar(
                "INSERT INTO pipeline_events (pipeline_id, at, kind, position, reason, gap_started_at) \
                 SELECT id, $1, 'paused', position, $2, $1 FROM pipelines WHERE id = $3 \
                 RETURNING position",
            )
            .bind(now)
            .bind(reason.unwrap_or("paused by the platform"))
            .bind(id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let paused = [Event::PipelinePaused {
                pipeline: id.clone(),
                position: position.map(parse).transpose()?,
                connection: None,
                reason: reason.map(str::to_owned),
                paused_by: PausedBy::Platform,
            }];
            events::write(&mut tx, self.backend, &paused, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn resume_pipeline_impl(
        &self,
        id: &PipelineId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        let state: Option<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT state, paused_by FROM pipelines WHERE id = $1{}",
            self.backend.for_update()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let (state, paused_by) = state.ok_or_else(|| StoreError::PipelineNotFound(id.clone()))?;
        let broken: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM pipeline_connections pc JOIN connections c ON c.id = pc.connection_id \
             WHERE pc.pipeline_id = $1 AND c.status = 'broken' ORDER BY c.id",
        )
        .bind(id.as_str())
        .fetch_all(&mut *tx)
        .await?;
        match (state.as_str(), paused_by.as_deref()) {
            ("running", _) => return Ok(()),
            (_, Some("credwatch")) => {
                return Err(StoreError::PausedForBrokenConnection {
                    pipeline: id.clone(),
                    connections: broken.join(", "),
                });
            }
            _ => {}
        }
        if !broken.is_empty() {
            // Still no data to read: the pause stays, as ours, and ends when they heal.
            sqlx::query(
                "UPDATE pipelines SET paused_by = 'credwatch', pause_reason = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(format!("connection {} is broken", broken.join(", ")))
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Err(StoreError::PausedForBrokenConnection {
                pipeline: id.clone(),
                connections: broken.join(", "),
            });
        }
        let (position, paused_at): (Option<String>, Option<i64>) = sqlx::query_as(
            "INSERT INTO pipeline_events (pipeline_id, at, kind, position, gap_started_at, gap_ended_at) \
             SELECT id, $1, 'resumed', position, paused_at, $1 FROM pipelines WHERE id = $2 \
             RETURNING position, gap_started_at",
        )
        .bind(now)
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE pipelines SET state = 'running', paused_at = NULL, paused_by = NULL, \
               pause_reason = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let resumed = [Event::PipelineResumed {
            pipeline: id.clone(),
            resume_from: position.map(parse).transpose()?,
            connection: None,
            gap_started_at: opt_time(paused_at)?,
            gap_ended_at: from_ms(now)?,
        }];
        events::write(&mut tx, self.backend, &resumed, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn pipeline_events_impl(
        &self,
        id: &PipelineId,
        limit: u32,
    ) -> Result<Vec<PipelineEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, position, connection_id, reason, gap_started_at, gap_ended_at \
             FROM pipeline_events WHERE pipeline_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PipelineEvent {
                    at: from_ms(r.try_get("at")?)?,
                    kind: r.try_get("kind")?,
                    position: opt_parse(r, "position")?,
                    connection: opt_parse(r, "connection_id")?,
                    reason: r.try_get("reason")?,
                    gap_started_at: opt_time(r.try_get("gap_started_at")?)?,
                    gap_ended_at: opt_time(r.try_get("gap_ended_at")?)?,
                })
            })
            .collect()
    }
}
