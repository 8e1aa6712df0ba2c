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
            "INSERT INTO events (kind, at, connection_id, pipeline_id, order_key, external_id, \
               metadata, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(type_number(event.type_name()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "event type {} has no stored number",
                event.type_name()
            ))
        })?)
        .bind(at)
        .bind(connection)
        .bind(event.pipeline().map(PipelineId::as_str))
        .bind(stored_order_key(event))
        .bind(external_id)
        .bind(metadata)
        .bind(data)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// An event's ordering key as stored: empty when it is its connection's id, which the
/// `connection_id` column holds already (`ORDER_KEY` reads it back).
fn stored_order_key(event: &Event) -> String {
    match event.connection() {
        Some(_) => String::new(),
        None => event.order_key(),
    }
}

/// An event's ordering key in SQL, from the columns `stored_order_key` wrote.
pub(super) const ORDER_KEY: &str = "COALESCE(NULLIF(e.order_key, ''), e.connection_id, '')";

/// What an event says without its type and its connection, which have columns of their own:
/// `{"name": …}` for `{"type": "connection.created", "data": {"connection": …, "name": …}}`.
fn content(event: &Event) -> Result<String, StoreError> {
    let cannot =
        |e: serde_json::Error| StoreError::Corrupt(format!("an event that cannot be written: {e}"));
    match serde_json::to_value(event).map_err(cannot)? {
        serde_json::Value::Object(mut tagged) => match tagged.remove("data") {
            Some(serde_json::Value::Object(mut data)) => {
                if let (Some(c), Some(serde_json::Value::String(said))) =
                    (event.connection(), data.get("connection"))
                    && said == c.as_str()
                {
                    data.remove("connection");
                }
                serde_json::to_string(&data).map_err(cannot)
            }
            Some(data) => serde_json::to_string(&data).map_err(cannot),
            None => Ok("null".to_owned()),
        },
        other => Err(StoreError::Corrupt(format!(
            "an event that cannot be written: not an object but {other}"
        ))),
    }
}

/// The first event at or after the time `param` (NULL when there is none). Events are written
/// in time order, so the walk in `seq` order reads only the older ones before it finds it; a
/// clock that stepped back keeps an event or two longer, never one fewer.
pub(super) fn first_since(param: &str) -> String {
    format!("(SELECT seq FROM events WHERE at >= {param} ORDER BY seq LIMIT 1)")
}

/// Each event type's number as stored (the `event_types` table names them in the database):
/// fixed forever; a new type takes the next number, in a migration as well.
const TYPE_NUMBERS: [(&str, i64); 10] = [
    ("connection.created", 1),
    ("connection.broken", 2),
    ("connection.degraded", 3),
    ("connection.recovered", 4),
    ("connection.reauthorized", 5),
    ("connection.expiring_soon", 6),
    ("connection.deleted", 7),
    ("pipeline.paused", 8),
    ("pipeline.resumed", 9),
    ("provider.alert", 10),
];

fn type_number(name: &str) -> Option<i64> {
    TYPE_NUMBERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

fn type_named(number: i64) -> Option<&'static str> {
    TYPE_NUMBERS
        .iter()
        .find(|(_, k)| *k == number)
        .map(|(n, _)| *n)
}

/// ` AND {alias}.kind IN (…)` for events of `types`: nothing when it is empty (every type), a
/// clause no event meets when none of them is a type. The numbers are ours, not the caller's.
pub(super) fn types_clause(alias: &str, types: &[String]) -> String {
    if types.is_empty() {
        return String::new();
    }
    let numbers: Vec<String> = types
        .iter()
        .filter_map(|t| type_number(t))
        .map(|k| k.to_string())
        .collect();
    if numbers.is_empty() {
        return " AND 1 = 0".to_owned();
    }
    format!(" AND {alias}.kind IN ({})", numbers.join(", "))
}

/// The columns `stored_from_row` reads.
pub(super) const EVENT_COLUMNS: &str =
    "seq, at, CAST(kind AS BIGINT) AS kind, connection_id, external_id, metadata, data";

/// An event from its type, its connection and its content, as `content` wrote them.
fn event_of(kind: &str, connection: Option<&str>, data: &str) -> Result<Event, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("event: {e}"));
    let mut data: serde_json::Value = serde_json::from_str(data).map_err(corrupt)?;
    if let (Some(c), serde_json::Value::Object(fields)) = (connection, &mut data) {
        fields
            .entry("connection")
            .or_insert_with(|| serde_json::Value::String(c.to_owned()));
    }
    let tagged = serde_json::json!({"type": kind, "data": data});
    serde_json::from_value(tagged).map_err(corrupt)
}

pub(super) fn stored_from_row(r: &AnyRow) -> Result<Stored, StoreError> {
    let number: i64 = r.try_get("kind")?;
    let kind = type_named(number)
        .ok_or_else(|| StoreError::Corrupt(format!("an event of unknown type {number}")))?;
    let data: String = r.try_get("data")?;
    let connection: Option<String> = r.try_get("connection_id")?;
    Ok(Stored {
        seq: r.try_get("seq")?,
        at: from_ms(r.try_get("at")?)?,
        external_id: r.try_get("external_id")?,
        metadata: r.try_get("metadata")?,
        event: event_of(kind, connection.as_deref(), &data)?,
    })
}

impl SqlStore {
    pub(super) async fn events_after_impl(
        &self,
        after: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<Stored>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE seq > $1{} ORDER BY seq LIMIT $2",
            types_clause("e", types)
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_from_row).collect()
    }

    pub(super) async fn prune_events_impl(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        // Deliveries still pending keep their events (a receiver down for longer than the
        // retention still gets them, until its own max_age ends them).
        let pruned = sqlx::query(&format!(
            "DELETE FROM events WHERE seq < COALESCE({}, (SELECT MAX(seq) + 1 FROM events)) \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
               WHERE d.event_seq = events.seq AND d.delivered_at IS NULL AND d.failed_at IS NULL)",
            first_since("$1")
        ))
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
    fn every_event_type_has_its_own_number_and_the_migrations_name_the_same() {
        for name in crate::events::TYPES {
            let number = type_number(name).unwrap_or_else(|| panic!("{name} has no number"));
            assert_eq!(type_named(number), Some(*name));
        }
        assert_eq!(TYPE_NUMBERS.len(), crate::events::TYPES.len());
        for migration in [
            include_str!("../../../migrations/sqlite/0017_event_type_numbers.sql"),
            include_str!("../../../migrations/postgres/0017_event_type_numbers.sql"),
        ] {
            for (name, number) in TYPE_NUMBERS {
                assert!(
                    migration.contains(&format!("({number}, '{name}')")),
                    "{name} is not {number} in the migration"
                );
            }
        }
    }

    #[test]
    fn a_type_filter_names_numbers_and_matches_nothing_when_no_type_is_known() {
        assert_eq!(types_clause("e", &[]), "");
        let types = ["pipeline.paused".to_owned(), "connection.broken".to_owned()];
        assert_eq!(types_clause("e", &types), " AND e.kind IN (8, 2)");
        assert_eq!(types_clause("e", &["nope".to_owned()]), " AND 1 = 0");
    }

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
        assert_eq!(event_of(e.type_name(), None, &data).unwrap(), e);
        // A type and a content that do not belong together are refused, not guessed at.
        assert!(event_of("connection.created", None, &data).is_err());
    }

    #[test]
    fn an_events_connection_is_stored_once_in_its_column_and_read_back_into_it() {
        let connection = crate::domain::ConnectionId::generate();
        let e = Event::PipelinePaused {
            pipeline: PipelineId::generate(),
            position: Some("cursor=7".parse().unwrap()),
            connection: Some(connection.clone()),
            reason: Some("revoked".into()),
            paused_by: crate::domain::PausedBy::Credwatch,
        };
        let data = content(&e).unwrap();
        assert!(!data.contains(connection.as_str()), "{data}");
        assert_eq!(stored_order_key(&e), "");
        assert_eq!(
            event_of(e.type_name(), Some(connection.as_str()), &data).unwrap(),
            e
        );
        // Without its column the content is not the event.
        assert_ne!(event_of(e.type_name(), None, &data).unwrap(), e);
        // As events were stored before, with the connection in the content too.
        let old = serde_json::to_value(&e).unwrap()["data"].to_string();
        assert_eq!(
            event_of(e.type_name(), Some(connection.as_str()), &old).unwrap(),
            e
        );
    }
}
