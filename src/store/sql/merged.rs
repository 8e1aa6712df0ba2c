//! Writes of check results through sqlx, on either backend: a finished check's history row
//! made the connection's last (`record`), tokens stored after a lost lease (`rescue`), and why a
//! guarded write was refused. The writes nearly every check makes go to the group commits
//! instead (`native` on SQLite, `pg_batch` on PostgreSQL).

use super::statements::*;
use super::*;

/// Stores tokens whose lease was lost, compared on the generation alone, and makes the
/// connection due at once; `TokensChanged` when someone stored other tokens meanwhile.
pub(super) async fn rescue(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    row: &RotateRow,
) -> Result<i64, StoreError> {
    let sql = format!(
        "WITH v ({TOKEN_COLUMNS}) AS (VALUES {}) \
         UPDATE connections SET key_id = v.kid, {SET_TOKENS}, next_check_at = v.ts \
         FROM v WHERE connections.id = v.cid AND connections.token_generation = v.expected \
         RETURNING connections.token_generation",
        values(backend, &TOKEN_TYPES, 1)
    );
    let stored: Option<i64> = bind(sqlx::query(&sql), row.params())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match stored {
        Some(generation) => Ok(generation),
        None => match why_not_ours(conn, &row.id, &row.owner).await? {
            StoreError::LeaseLost(id) => Err(StoreError::TokensChanged(id)),
            other => Err(other),
        },
    }
}

/// A finished check's history row (the `HealthyRow` fields every result has), written once,
/// whole, and made its connection's last.
pub(super) async fn record(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    check: &HealthyRow,
) -> Result<(), StoreError> {
    let sql = format!("{} RETURNING id", record_sql(backend));
    let last: i64 = bind(sqlx::query(&sql), check.history())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    sqlx::query("UPDATE connections SET last_check_id = $1 WHERE id = $2")
        .bind(last)
        .bind(check.id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// After a guarded update touched nothing: was it the lease or the tokens?
pub(super) async fn why_not_ours(
    tx: &mut sqlx::AnyConnection,
    id: &ConnectionId,
    owner: &str,
) -> Result<StoreError, StoreError> {
    let found: Option<Option<String>> = sqlx::query_scalar(super::statements::LEASE_OWNER)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    Ok(refused(found, id, owner))
}
