//! The event log: events written in the transaction of their change, read in order by the feed
//! and fanned out to webhook deliveries.

use super::*;
use crate::events::{Event, Stored};

/// Taken by every transaction that writes events, as its last lock, on PostgreSQL: events then
/// commit in `seq` order, so a reader that has seen `seq` N never later finds an N-1 appear.
const EVENT_LOCK: i64 = 0x6372_6577_6576; // "crewev"

impl Backend {
    async fn lock_events(self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        if self == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(EVENT_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// The connection's platform ids as they are now (an event keeps them: it may outlive it).
pub(super) type PlatformIds = (Option<String>, Option<String>);

/// Writes `events` at `at`. Call it last in the transaction, after every other write, so the
/// event lock is the last lock it takes (no lock cycle with other writers).
pub(super) async fn write(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    events: &[Event],
    at: i64,
) -> Result<(), StoreError> {
    write_with(tx, backend, events, at, None).await
}

/// `write`, with the connection's platform ids given (the connection is gone already).
pub(super) async fn write_with(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    events: &[Event],
    at: i64,
    ids: Option<&PlatformIds>,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    backend.lock_events(tx).await?;
    // A break writes one event for the connection and one per paused pipeline: its ids are
    // read once.
    let mut known: Option<(&str, PlatformIds)> = None;
    for event in events {
        let data = content(event)?;
        let connection = event.connection().map(ConnectionId::as_str);
        let (external_id, metadata) = match (ids, connection, &known) {
            (Some(given), _, _) => given.clone(),
            (None, Some(c), Some((k, read))) if *k == c => read.clone(),
            (None, Some(c), _) => {
                let read: PlatformIds =
                    sqlx::query_as("SELECT external_id, metadata FROM connections WHERE id = $1")
                        .bind(c)
                        .fetch_optional(&mut *tx)
                        .await?
                        .unwrap_or_default();
                known = Some((c, read.clone()));
                read
            }
            (None, None, _) => (None, None),
        };
        sqlx::query(
            "INSERT INTO events (type, at, connection_id, pipeline_id, order_key, external_id, \
               metadata, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.type_name())
        .bind(at)
        .bind(connection)
        .bind(event.pipeline().map(PipelineId::as_str))
        .bind(event.order_key())
        .bind(external_id)
        .bind(metadata)
        .bind(data)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// What an event says without its type, which has a column of its own: `{"connection": …}`.
fn content(event: &Event) -> Result<String, StoreError> {
    let cannot =
        |e: serde_json::Error| StoreError::Corrupt(format!("an event that cannot be written: {e}"));
    match serde_json::to_value(event).map_err(cannot)? {
        serde_json::Value::Object(mut tagged) => match tagged.remove("data") {
            Some(data) => serde_json::to_string(&data).map_err(cannot),
            None => Ok("null".to_owned()),
        },
        other => Err(StoreError::Corrupt(format!(
            "an event that cannot be written: not an object but {other}"
        ))),
    }
}

/// The columns `stored_from_row` reads.
pub(super) const EVENT_COLUMNS: &str = "seq, at, type, external_id, metadata, data";

/// An event from its type and its content, as `content` wrote it.
fn event_of(kind: &str, data: &str) -> Result<Event, StoreError> {
    let tagged = format!(
        "{{\"type\":{},\"data\":{data}}}",
        serde_json::Value::String(kind.to_owned())
    );
    serde_json::from_str(&tagged).map_err(|e| StoreError::Corrupt(format!("event: {e}")))
}

pub(super) fn stored_from_row(r: &AnyRow) -> Result<Stored, StoreError> {
    let kind: String = r.try_get("type")?;
    let data: String = r.try_get("data")?;
    Ok(Stored {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?)?,
        external_id: r.try_get("external_id")?,
        metadata: r.try_get("metadata")?,
        event: event_of(&kind, &data)?,
    })
}

impl SqlStore {
    pub(super) async fn events_after_impl(
        &self,
        after: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1");
        if !types.is_empty() {
            let params: Vec<String> = (0..types.len()).map(|i| format!("${}", i + 3)).collect();
            sql.push_str(&format!(" AND type IN ({})", params.join(", ")));
        }
        sql.push_str(" ORDER BY seq LIMIT $2");
        let mut query = sqlx::query(&sql).bind(after).bind(i64::from(limit));
        for t in types {
            query = query.bind(t.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(stored_from_row).collect()
    }

    pub(super) async fn prune_events_impl(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        // Deliveries still pending keep their events (a receiver down for longer than the
        // retention still gets them, until its own max_age ends them).
        let pruned = sqlx::query(
            "DELETE FROM events WHERE at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
               WHERE d.event_seq = events.seq AND d.delivered_at IS NULL AND d.failed_at IS NULL)",
        )
        .bind(to_ms(before))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pruned.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PipelineId;

    #[test]
    fn an_event_is_stored_without_its_type_and_read_back_whole() {
        let e = Event::PipelineResumed {
            pipeline: PipelineId::generate(),
            resume_from: Some("cursor=7".parse().unwrap()),
            connection: None,
            gap_started_at: None,
            gap_ended_at: Utc::now(),
        };
        let data = content(&e).unwrap();
        assert!(data.contains("\"pipeline\":\"pipe_"), "{data}");
        assert!(!data.contains("pipeline.resumed"), "{data}");
        assert_eq!(event_of(e.type_name(), &data).unwrap(), e);
        // A type and a content that do not belong together are refused, not guessed at.
        assert!(event_of("connection.created", &data).is_err());
    }
}
