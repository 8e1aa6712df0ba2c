//! The writes nearly every check makes (its rotated tokens; "still healthy" with its history row;
//! or both at once when the refresh is the whole check), through sqlx, as statements that carry
//! many rows: PostgreSQL's group commit (`pg_batch`) runs them. What a check costs the database
//! is the rows and index pages it dirties, so they touch as few as they can: one write of the
//! connection row per check. (SQLite's writer, `native`, runs the same statements' one-row
//! forms.)

use std::collections::HashMap;

use super::statements::*;
use super::*;

/// Rows in one statement at most (SQLite allows 32,766 parameters). Chunks are powers of two,
/// so each kind of write has a handful of statement texts and they stay prepared.
const MAX_ROWS: usize = 128;

/// Runs a merged UPDATE and answers the ids of the connections it applied to.
async fn applied<'q>(
    conn: &mut sqlx::AnyConnection,
    returning: &'q str,
    bind: impl Fn(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    Ok(bind(sqlx::query(returning)).fetch_all(&mut *conn).await?)
}

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

/// Stores rotated tokens. The outer error is a failed statement (undo the whole call); an inner
/// one says why a row was refused (its lease or its tokens changed), with nothing written for it.
pub(super) async fn rotate(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[RotateRow],
) -> Result<Vec<Result<i64, StoreError>>, StoreError> {
    let mut stored: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for chunk in chunks(rows) {
        let sql = format!(
            "{} RETURNING connections.id, connections.token_generation",
            Update::rotate().merged(backend, chunk.len())
        );
        let bind = |q| bind(q, chunk.iter().flat_map(RotateRow::params));
        for row in applied(conn, &sql, bind).await? {
            stored.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(match stored.get(r.id.as_str()) {
            Some(generation) => Ok(*generation),
            None => Err(why_not_ours(conn, &r.id, &r.owner).await?),
        });
    }
    Ok(out)
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

/// Marks checks of healthy connections done: `false` for a row not applied (and nothing written
/// for it) because the connection is no longer healthy or no longer ours, for the full path to
/// decide. An error is a failed statement: undo the whole call.
pub(super) async fn finish_healthy(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[HealthyRow],
) -> Result<Vec<bool>, StoreError> {
    let checks: Vec<&HealthyRow> = rows.iter().collect();
    let last = history(conn, backend, &checks).await?;
    let update = Update::healthy();
    let mut ids = std::collections::HashSet::with_capacity(rows.len());
    let linked: Vec<(&HealthyRow, i64)> = rows.iter().zip(last.iter().copied()).collect();
    for chunk in chunks(&linked) {
        let sql = format!(
            "{} RETURNING connections.id",
            update.merged(backend, chunk.len())
        );
        let bind = |q| bind(q, chunk.iter().flat_map(healthy_linked));
        for row in applied(conn, &sql, bind).await? {
            ids.insert(row.try_get::<String, _>(0)?);
        }
    }
    let applied: Vec<bool> = rows.iter().map(|r| ids.contains(r.id.as_str())).collect();
    unrecord(conn, backend, &last, &applied).await?;
    Ok(applied)
}

/// Stores refreshed tokens with a healthy result: `false` for a row not applied (nothing written
/// for it) because anything is not as claimed: the lease, the tokens, the status or the key.
pub(super) async fn refreshed(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    rows: &[RefreshedRow],
) -> Result<Vec<bool>, StoreError> {
    let checks: Vec<&HealthyRow> = rows.iter().map(|r| &r.check).collect();
    let last = history(conn, backend, &checks).await?;
    let update = Update::refreshed();
    let mut ids = std::collections::HashSet::with_capacity(rows.len());
    let linked: Vec<(&RefreshedRow, i64)> = rows.iter().zip(last.iter().copied()).collect();
    for chunk in chunks(&linked) {
        let sql = format!(
            "{} RETURNING connections.id",
            update.merged(backend, chunk.len())
        );
        let bind = |q| bind(q, chunk.iter().flat_map(refreshed_linked));
        for row in applied(conn, &sql, bind).await? {
            ids.insert(row.try_get::<String, _>(0)?);
        }
    }
    let applied: Vec<bool> = rows
        .iter()
        .map(|r| ids.contains(r.tokens.id.as_str()))
        .collect();
    unrecord(conn, backend, &last, &applied).await?;
    Ok(applied)
}

/// A row's parameters, and its history row's id as the connection's last check.
fn healthy_linked<'a>(&(r, last): &(&'a HealthyRow, i64)) -> impl Iterator<Item = P<'a>> {
    r.params().into_iter().chain([P::Int(Some(last))])
}

fn refreshed_linked<'a>(&(r, last): &(&'a RefreshedRow, i64)) -> impl Iterator<Item = P<'a>> {
    r.params().chain([P::Int(Some(last))])
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

/// Removes the history rows of checks whose update did not apply: nothing of them is kept.
async fn unrecord(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    ids: &[i64],
    applied: &[bool],
) -> Result<(), StoreError> {
    let refused: Vec<i64> = ids
        .iter()
        .zip(applied)
        .filter(|(_, applied)| !**applied)
        .map(|(id, _)| *id)
        .collect();
    for chunk in chunks(&refused) {
        let sql = format!(
            "WITH v (id) AS (VALUES {}) DELETE FROM checks WHERE id IN (SELECT id FROM v)",
            values(backend, &[Ty::Int], chunk.len())
        );
        bind(sqlx::query(&sql), chunk.iter().map(|id| P::Int(Some(*id))))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
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
