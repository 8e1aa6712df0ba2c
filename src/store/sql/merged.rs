//! Writes of check results through sqlx, on either backend: a finished check's history row(s)
//! made the connection's last (`record`), tokens stored after a lost lease (`rescue`), and why a
//! guarded write was refused. The writes nearly every check makes go to the group commits
//! instead (`native` on SQLite, `pg_batch` on PostgreSQL).

use std::collections::HashMap;

use super::statements::*;
use super::*;

/// Rows in one statement at most (SQLite allows 32,766 parameters). Chunks are powers of two,
/// so each kind of write has a handful of statement texts and they stay prepared.
const MAX_ROWS: usize = 128;

/// Powers of two, largest first: 43 rows go as 32 + 8 + 2 + 1.
fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let size = 1 << rows.len().min(MAX_ROWS).ilog2();
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

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

/// Writes the history rows of `checks` and answers their ids, in `checks` order, for the
/// update of each connection to name as its last.
async fn history(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    checks: &[&HealthyRow],
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(checks.len());
    for chunk in chunks(checks) {
        let connections: std::collections::HashSet<&str> =
            chunk.iter().map(|r| r.id.as_str()).collect();
        // Rows come back in no promised order: they are matched by connection, which is
        // unique unless one connection finished twice here (then one row at a time).
        if connections.len() < chunk.len() && chunk.len() > 1 {
            for one in chunk {
                ids.extend(Box::pin(history(conn, backend, std::slice::from_ref(one))).await?);
            }
            continue;
        }
        let sql = format!(
            "{} RETURNING connection_id, id",
            record_sql(backend, chunk.len())
        );
        let returned = bind(sqlx::query(&sql), chunk.iter().flat_map(|r| r.history()))
            .fetch_all(&mut *conn)
            .await?;
        let mut by_connection = HashMap::with_capacity(returned.len());
        for row in &returned {
            by_connection.insert(row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?);
        }
        for r in chunk {
            let id = by_connection.get(r.id.as_str()).ok_or_else(|| {
                StoreError::Commit(format!("no history row came back for {}", r.id))
            })?;
            ids.push(*id);
        }
    }
    Ok(ids)
}

/// The history rows of finished checks (the `HealthyRow` fields every result has), each
/// written once, whole, and made its connection's last.
pub(super) async fn record(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    done: &[&HealthyRow],
) -> Result<(), StoreError> {
    let last = history(conn, backend, done).await?;
    let links: Vec<(&HealthyRow, i64)> = done.iter().copied().zip(last).collect();
    for chunk in chunks(&links) {
        let sql = format!(
            "WITH v (cid, last) AS (VALUES {}) \
             UPDATE connections SET last_check_id = v.last FROM v WHERE connections.id = v.cid",
            values(backend, &[Ty::Text, Ty::Int], chunk.len())
        );
        let params = chunk
            .iter()
            .flat_map(|(r, last)| [P::Text(Some(r.id.as_str())), P::Int(Some(*last))]);
        bind(sqlx::query(&sql), params).execute(&mut *conn).await?;
    }
    Ok(())
}

/// After a guarded update touched nothing: was it the lease or the tokens?
pub(super) async fn why_not_ours(
    tx: &mut sqlx::AnyConnection,
    id: &ConnectionId,
    owner: &str,
) -> Result<StoreError, StoreError> {
    let found: Option<Option<String>> =
        sqlx::query_scalar("SELECT lease_owner FROM connections WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    Ok(refused(found, id, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_largest_first() {
        let rows: Vec<u32> = (0..300).collect();
        let sizes: Vec<usize> = chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes, [128, 128, 32, 8, 4]);
        assert_eq!(chunks(&rows[..0]).count(), 0);
        let all: Vec<u32> = chunks(&rows).flatten().copied().collect();
        assert_eq!(all, rows);
    }
}
