//! Reading rows back into the store's types; a value that does not parse is `Corrupt`, never a panic.

use super::*;

pub(super) fn parse<T: std::str::FromStr>(s: String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(e.to_string()))
}

/// A nullable text column parsed into its type.
pub(super) fn opt_parse<T: std::str::FromStr>(
    r: &AnyRow,
    col: &str,
) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    r.try_get::<Option<String>, _>(col)?.map(parse).transpose()
}

/// A counter column as a u32; out-of-range values (never written) are clamped, not a panic.
pub(super) fn small(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

pub(super) fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

/// A row of any driver (sqlx's `Any` or PostgreSQL, or the native SQLite writer's), read by
/// column name.
pub(super) trait Columns {
    fn get<T: FromColumn>(&self, col: &str) -> Result<T, StoreError>;
}

impl Columns for AnyRow {
    fn get<T: FromColumn>(&self, col: &str) -> Result<T, StoreError> {
        T::from_any(self, col)
    }
}

/// A row the native SQLite writer read: its statement's column names and the values.
pub(super) struct NativeRow {
    names: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
    /// Where to start looking for the next column asked for: readers ask for them mostly in
    /// the statement's order, so the search usually ends at its first name.
    /// (Atomic only so that rows can be shared while their reader awaits.)
    next: std::sync::atomic::AtomicUsize,
}

impl NativeRow {
    pub(super) fn new(names: Arc<[String]>, values: Vec<rusqlite::types::Value>) -> Self {
        NativeRow {
            names,
            values,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Columns for NativeRow {
    fn get<T: FromColumn>(&self, col: &str) -> Result<T, StoreError> {
        let n = self.names.len();
        let start = self.next.load(std::sync::atomic::Ordering::Relaxed);
        let at = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.names[i] == col);
        if let Some(i) = at {
            self.next.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        }
        let value = at
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {col}")))?;
        T::from_native(value).ok_or_else(|| {
            StoreError::Corrupt(format!("column {col} holds a {}", value.data_type()))
        })
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn get<T: FromColumn>(&self, col: &str) -> Result<T, StoreError> {
        T::from_pg(self, col)
    }
}

/// A column's Rust type, from any of the drivers.
pub(super) trait FromColumn: Sized {
    fn from_any(row: &AnyRow, col: &str) -> Result<Self, StoreError>;
    fn from_native(value: &rusqlite::types::Value) -> Option<Self>;
    fn from_pg(row: &sqlx::postgres::PgRow, col: &str) -> Result<Self, StoreError>;
}

macro_rules! from_column {
    ($t:ty, $variant:ident) => {
        impl FromColumn for $t {
            fn from_any(row: &AnyRow, col: &str) -> Result<Self, StoreError> {
                Ok(row.try_get(col)?)
            }
            fn from_pg(row: &sqlx::postgres::PgRow, col: &str) -> Result<Self, StoreError> {
                Ok(row.try_get(col)?)
            }
            fn from_native(value: &rusqlite::types::Value) -> Option<Self> {
                match value {
                    rusqlite::types::Value::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }

        impl FromColumn for Option<$t> {
            fn from_any(row: &AnyRow, col: &str) -> Result<Self, StoreError> {
                Ok(row.try_get(col)?)
            }
            fn from_pg(row: &sqlx::postgres::PgRow, col: &str) -> Result<Self, StoreError> {
                Ok(row.try_get(col)?)
            }
            fn from_native(value: &rusqlite::types::Value) -> Option<Self> {
                match value {
                    rusqlite::types::Value::Null => Some(None),
                    v => <$t>::from_native(v).map(Some),
                }
            }
        }
    };
}

from_column!(String, Text);
from_column!(i64, Integer);
from_column!(Vec<u8>, Blob);

pub(super) fn connection_from_row<R: Columns>(r: &R) -> Result<Connection, StoreError> {
    let scopes: String = r.get("scopes")?;
    Ok(Connection {
        id: parse(r.get("id")?)?,
        provider: parse(r.get("provider")?)?,
        name: r.get("name")?,
        owner: parse(r.get("owner_email")?)?,
        account: r.get("account")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        status: parse(r.get("status")?)?,
        reason: r.get("reason")?,
        since: from_ms(r.get("status_since")?)?,
        has_refresh_token: r.get::<i64>("has_refresh_token")? != 0,
        token_generation: r.get("token_generation")?,
        access_expires_at: opt_time(r.get("access_expires_at")?)?,
        refresh_expires_at: opt_time(r.get("refresh_expires_at")?)?,
        consecutive_failures: small(r.get("consecutive_failures")?),
        refresh_uncertain_since: opt_time(r.get("refresh_uncertain_since")?)?,
        refresh_interrupted_at: opt_time(r.get("refresh_interrupted_at")?)?,
        set_aside: r.get("set_aside")?,
        last_check_at: opt_time(r.get("last_check_at")?)?,
        next_check_at: from_ms(r.get("next_check_at")?)?,
        created_at: from_ms(r.get("created_at")?)?,
        external_id: r.get("external_id")?,
        metadata: r.get("metadata")?,
        credential_kind: r.get("credential_kind")?,
        instance_url: r.get("instance_url")?,
    })
}

pub(super) fn pipeline_from_row(
    r: &AnyRow,
    connections: Vec<ConnectionId>,
) -> Result<Pipeline, StoreError> {
    let position = |col: &str| -> Result<Option<Position>, StoreError> {
        r.try_get::<Option<String>, _>(col)?.map(parse).transpose()
    };
    Ok(Pipeline {
        id: parse(r.try_get("id")?)?,
        name: r.try_get("name")?,
        state: parse(r.try_get("state")?)?,
        position: position("position")?,
        position_updated_at: opt_time(r.try_get("position_updated_at")?)?,
        paused_at_position: position("paused_at_position")?,
        paused_at: opt_time(r.try_get("paused_at")?)?,
        paused_by: opt_parse(r, "paused_by")?,
        pause_reason: r.try_get("pause_reason")?,
        connections,
        created_at: from_ms(r.try_get("created_at")?)?,
        external_id: r.try_get("external_id")?,
    })
}
