//! The writes nearly every check makes (its rotated tokens; "still healthy" with its history row;
//! or both at once when the refresh is the whole check), as statements that can carry many rows.
//! What a check costs the database is the rows and index pages it dirties, so they touch as few
//! as they can: one write of the connection row per check where possible.
//!
//! On PostgreSQL, which has no group commit of ours, the statements carry one row. SQLite's
//! writer (`native`) runs the one-row statements too, once per row, prepared once: a statement
//! there costs no round trip, and each row answers for itself.

use std::collections::HashMap;

use super::*;

/// Rows in one statement at most (SQLite allows 32,766 parameters). Chunks are powers of two,
/// so each kind of write has a handful of statement texts and they stay prepared.
const MAX_ROWS: usize = 128;

/// New tokens for a connection, compare-and-swapped on the generation and the lease.
pub(super) struct RotateRow {
    pub id: ConnectionId,
    pub owner: String,
    pub expected: i64,
    pub key_id: String,
    pub access: Vec<u8>,
    pub refresh: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub scopes: String,
    /// Where the provider now says the connection's API is (Salesforce's `instance_url`).
    pub instance_url: Option<String>,
    pub now: i64,
}

/// A healthy connection found healthy again, and its history row.
pub(super) struct HealthyRow {
    pub id: ConnectionId,
    pub owner: String,
    pub now: i64,
    pub next_check_at: i64,
    pub uncertain: Option<i64>,
    pub started_at: i64,
    pub phase: &'static str,
    pub category: &'static str,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub detail: String,
    pub generation: i64,
}

/// A refresh that was the whole check: its tokens and its (healthy) result together.
pub(super) struct RefreshedRow {
    pub tokens: RotateRow,
    pub check: HealthyRow,
}

/// A `RotateRow`'s columns in `v`, their types, and what they set: the tokens' part of a write.
const TOKEN_COLUMNS: &str = "cid, lease, expected, kid, acc, ref, exp, rexp, scp, inst, ts";
const TOKEN_TYPES: [Ty; 11] = {
    use Ty::*;
    [Text, Text, Int, Text, Blob, Blob, Int, Int, Text, Text, Int]
};
const SET_TOKENS: &str = "access_token = v.acc, refresh_token = v.ref, \
     token_generation = connections.token_generation + 1, access_expires_at = v.exp, \
     refresh_expires_at = COALESCE(v.rexp, connections.refresh_expires_at), \
     scopes = CASE WHEN v.scp = '' THEN connections.scopes ELSE v.scp END, \
     instance_url = COALESCE(v.inst, connections.instance_url), \
     tokens_updated_at = v.ts, updated_at = v.ts, refresh_uncertain_since = NULL, \
     refresh_interrupted_at = NULL, refresh_sent_at = NULL";
/// The guards every token write has: our lease, and the tokens we refreshed still stored.
const TOKENS_UNCHANGED: &str = "connections.id = v.cid AND connections.token_generation = v.expected \
     AND connections.lease_owner = v.lease";

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// A statement parameter, so that a row's values are listed once for both drivers.
#[derive(Clone, Copy)]
pub(super) enum P<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
}

impl rusqlite::ToSql for P<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            P::Int(Some(v)) => ValueRef::Integer(v),
            P::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            P::Blob(Some(v)) => ValueRef::Blob(v),
            P::Int(None) | P::Text(None) | P::Blob(None) => ValueRef::Null,
        }))
    }
}

pub(super) fn bind<'q>(
    mut q: AnyQuery<'q>,
    params: impl IntoIterator<Item = P<'q>>,
) -> AnyQuery<'q> {
    for p in params {
        q = match p {
            P::Int(v) => q.bind(v),
            P::Text(v) => q.bind(v),
            P::Blob(v) => q.bind(v),
        };
    }
    q
}

impl RotateRow {
    /// In `TOKEN_COLUMNS` order.
    pub(super) fn params(&self) -> [P<'_>; 11] {
        [
            P::Text(Some(self.id.as_str())),
            P::Text(Some(&self.owner)),
            P::Int(Some(self.expected)),
            P::Text(Some(&self.key_id)),
            P::Blob(Some(&self.access)),
            P::Blob(self.refresh.as_deref()),
            P::Int(self.expires_at),
            P::Int(self.refresh_expires_at),
            P::Text(Some(&self.scopes)),
            P::Text(self.instance_url.as_deref()),
            P::Int(Some(self.now)),
        ]
    }
}

impl HealthyRow {
    /// In `Update::healthy`'s `v` order.
    pub(super) fn params(&self) -> [P<'_>; 5] {
        [
            P::Text(Some(self.id.as_str())),
            P::Text(Some(&self.owner)),
            P::Int(Some(self.now)),
            P::Int(Some(self.next_check_at)),
            P::Int(self.uncertain),
        ]
    }

    /// Its history row, in `record_sql`'s `v` order.
    pub(super) fn history(&self) -> [P<'_>; 10] {
        [
            P::Text(Some(self.id.as_str())),
            P::Text(Some(&self.owner)),
            P::Int(Some(self.generation)),
            P::Int(Some(self.started_at)),
            P::Int(Some(self.now)),
            P::Text(Some(self.phase)),
            P::Text(Some(self.category)),
            P::Int(self.http_status),
            P::Int(Some(self.latency_ms)),
            P::Text(Some(&self.detail)),
        ]
    }
}

impl RefreshedRow {
    /// In `Update::refreshed`'s `v` order.
    pub(super) fn params(&self) -> impl Iterator<Item = P<'_>> {
        self.tokens
            .params()
            .into_iter()
            .chain([P::Int(Some(self.check.next_check_at))])
    }
}

#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
    Blob,
}

/// `(CAST($1 AS …), …), ($k, …), …`: the first row's casts give PostgreSQL the column types,
/// which parameters alone (a NULL, say) do not.
fn values(backend: Backend, types: &[Ty], rows: usize) -> String {
    let mut out = String::with_capacity(rows * types.len() * 6);
    let mut n = 0;
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for (i, ty) in types.iter().enumerate() {
            n += 1;
            if i > 0 {
                out.push_str(", ");
            }
            let param = backend.param(n);
            if row == 0 {
                let name = match (ty, backend) {
                    (Ty::Int, _) => "BIGINT",
                    (Ty::Text, _) => "TEXT",
                    (Ty::Blob, Backend::Sqlite) => "BLOB",
                    (Ty::Blob, Backend::Postgres) => "BYTEA",
                };
                out.push_str(&format!("CAST({param} AS {name})"));
            } else {
                out.push_str(&param);
            }
        }
        out.push(')');
    }
    out
}

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

/// One kind of guarded write of connection rows: the columns of `v` (one row of values per
/// connection), what it sets and when it applies, written once for both of its forms.
pub(super) struct Update {
    columns: &'static str,
    types: Vec<Ty>,
    set: String,
    guard: String,
}

impl Update {
    /// Rotated tokens, under our lease and the generation we refreshed.
    pub(super) fn rotate() -> Self {
        Update {
            columns: TOKEN_COLUMNS,
            types: TOKEN_TYPES.to_vec(),
            set: format!("key_id = v.kid, {SET_TOKENS}"),
            guard: TOKENS_UNCHANGED.to_owned(),
        }
    }

    /// "Still healthy", for connections that are healthy and ours.
    pub(super) fn healthy() -> Self {
        use Ty::*;
        Update {
            columns: "cid, lease, ts, next_at, uncertain, last",
            types: vec![Text, Text, Int, Int, Int, Int],
            set: "consecutive_failures = 0, last_check_at = v.ts, \
                  next_check_at = v.next_at, lease_owner = NULL, lease_expires_at = NULL, \
                  updated_at = v.ts, refresh_uncertain_since = CASE v.uncertain \
                    WHEN 1 THEN COALESCE(connections.refresh_uncertain_since, \
                      connections.refresh_sent_at, v.ts) \
                    WHEN 0 THEN NULL ELSE connections.refresh_uncertain_since END, \
                  refresh_interrupted_at = CASE v.uncertain WHEN 0 THEN NULL \
                    ELSE connections.refresh_interrupted_at END, refresh_sent_at = NULL, \
                  last_check_id = v.last"
                .to_owned(),
            guard: "connections.id = v.cid AND connections.lease_owner = v.lease \
                    AND connections.status = 'healthy'"
                .to_owned(),
        }
    }

    /// Refreshed tokens and a healthy result, all as claimed.
    pub(super) fn refreshed() -> Self {
        let mut types = TOKEN_TYPES.to_vec();
        types.extend([Ty::Int, Ty::Int]);
        Update {
            columns: "cid, lease, expected, kid, acc, ref, exp, rexp, scp, inst, ts, next_at, last",
            types,
            set: format!(
                "{SET_TOKENS}, consecutive_failures = 0, last_check_at = v.ts, \
                 next_check_at = v.next_at, lease_owner = NULL, lease_expires_at = NULL, \
                 last_check_id = v.last"
            ),
            guard: format!(
                "{TOKENS_UNCHANGED} AND connections.key_id = v.kid \
                 AND connections.status = 'healthy'"
            ),
        }
    }

    /// For `rows` connections at once: `v` is a table of values.
    pub(super) fn merged(&self, backend: Backend, rows: usize) -> String {
        format!(
            "WITH v ({}) AS (VALUES {}) UPDATE connections SET {} FROM v WHERE {}",
            self.columns,
            values(backend, &self.types, rows),
            self.set,
            self.guard
        )
    }

    /// For one connection on SQLite, with plain parameters (`?1` for `v`'s first column …): no
    /// table of values to build and join.
    pub(super) fn direct(&self) -> String {
        let columns: Vec<&str> = self.columns.split(", ").collect();
        format!(
            "UPDATE connections SET {} WHERE {}",
            numbered(&self.set, &columns),
            numbered(&self.guard, &columns)
        )
    }
}

/// `v.name` as `?n`, `name` being `columns[n - 1]`.
fn numbered(text: &str, columns: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("v.") {
        let starts_word = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match columns.iter().position(|c| *c == &after[..len]) {
            Some(i) if starts_word => out.push_str(&format!("?{}", i + 1)),
            _ => out.push_str(&rest[at..at + 2 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

const HISTORY_COLUMNS: &str = "connection_id, previous_id, instance, token_generation, \
     started_at, finished_at, phase, category, http_status, latency_ms, error";

/// The history rows of `rows` finished checks, each linked to its connection's last check. The
/// caller makes each new row its connection's last (`last_check_id`, in the same update as the
/// result where it can).
pub(super) fn record_sql(backend: Backend, rows: usize) -> String {
    use Ty::*;
    let types = [Text, Text, Int, Int, Int, Text, Text, Int, Int, Text];
    format!(
        "WITH v (cid, inst, gen, started, finished, ph, cat, st, lat, err) AS (VALUES {}) \
         INSERT INTO checks ({HISTORY_COLUMNS}) \
         SELECT v.cid, (SELECT last_check_id FROM connections c WHERE c.id = v.cid), v.inst, \
           v.gen, v.started, v.finished, v.ph, v.cat, v.st, v.lat, v.err FROM v",
        values(backend, &types, rows)
    )
}

/// `record_sql` for one check on SQLite, with plain parameters.
pub(super) fn record_direct() -> String {
    format!(
        "INSERT INTO checks ({HISTORY_COLUMNS}) VALUES (?1, \
           (SELECT last_check_id FROM connections WHERE id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
           ?9, ?10)"
    )
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
    for chunk in chunks(done) {
        let sql = format!(
            "{} RETURNING connection_id, id",
            record_sql(backend, chunk.len())
        );
        let ids = bind(sqlx::query(&sql), chunk.iter().flat_map(|r| r.history()))
            .fetch_all(&mut *conn)
            .await?;
        let mut links = Vec::with_capacity(ids.len());
        for row in &ids {
            links.push((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?));
        }
        let sql = format!(
            "WITH v (cid, last) AS (VALUES {}) \
             UPDATE connections SET last_check_id = v.last FROM v WHERE connections.id = v.cid",
            values(backend, &[Ty::Text, Ty::Int], links.len())
        );
        let params = links
            .iter()
            .flat_map(|(cid, last)| [P::Text(Some(cid)), P::Int(Some(*last))]);
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
    Ok(match found {
        None => StoreError::ConnectionNotFound(id.clone()),
        Some(o) if o.as_deref() != Some(owner) => StoreError::LeaseLost(id.clone()),
        Some(_) => StoreError::TokensChanged(id.clone()),
    })
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

    #[test]
    fn direct_updates_number_the_columns_of_v() {
        let sql = Update::healthy().direct();
        assert!(
            sql.starts_with("UPDATE connections SET consecutive_failures = 0, last_check_at = ?3,")
        );
        assert!(sql.contains(
            "COALESCE(connections.refresh_uncertain_since, connections.refresh_sent_at, ?3)"
        ));
        assert!(sql.contains(
            "last_check_id = ?6 WHERE connections.id = ?1 AND connections.lease_owner = ?2"
        ));
        assert!(!sql.contains("v."), "{sql}");
        let sql = Update::refreshed().direct();
        assert!(
            sql.contains("access_token = ?5, refresh_token = ?6,"),
            "{sql}"
        );
        assert!(sql.contains("next_check_at = ?12"), "{sql}");
        assert!(sql.contains("last_check_id = ?13"), "{sql}");
        assert!(!sql.contains("v."), "{sql}");
        // Only whole names of v's columns: not `prev.ts`, not `v.unknown`.
        assert_eq!(
            numbered("prev.ts = v.ts, v.unknown", &["ts"]),
            "prev.ts = ?1, v.unknown"
        );
    }

    #[test]
    fn values_cast_the_first_row_only() {
        let sql = values(Backend::Postgres, &[Ty::Text, Ty::Blob], 2);
        assert_eq!(sql, "(CAST($1 AS TEXT), CAST($2 AS BYTEA)), ($3, $4)");
        let sql = values(Backend::Sqlite, &[Ty::Int, Ty::Blob], 2);
        assert_eq!(sql, "(CAST(? AS BIGINT), CAST(? AS BLOB)), (?, ?)");
    }
}
