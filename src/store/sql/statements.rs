//! The rows a check writes (its rotated tokens, its result, its history row) and the
//! statements that write them, stated once for every driver: as one-row statements with plain
//! parameters (`native`, SQLite's writer), as statements over arrays (`unnested`, PostgreSQL's
//! group writers), and over a table of values `v` for the rarer writes through sqlx (`merged`).

use super::*;

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
    /// Where the claim found the connection (`Claimed::row`).
    pub row: Option<i64>,
    pub owner: String,
    pub now: i64,
    pub next_check_at: i64,
    pub uncertain: Option<i64>,
    pub started_at: i64,
    /// The phase's and the category's numbers (`codes`).
    pub phase: i64,
    pub category: i64,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    /// None when it is the usual one (`codes::stored_detail`).
    pub detail: Option<String>,
    pub generation: i64,
}

/// A refresh that was the whole check: its tokens and its (healthy) result together.
pub(super) struct RefreshedRow {
    pub tokens: RotateRow,
    pub check: HealthyRow,
}

/// A `RotateRow`'s columns in `v`, their types, and what they set: the tokens' part of a write.
pub(super) const TOKEN_COLUMNS: &str =
    "cid, lease, expected, kid, acc, ref, exp, rexp, scp, inst, ts";
pub(super) const TOKEN_TYPES: [Ty; 11] = {
    use Ty::*;
    [Text, Text, Int, Text, Blob, Blob, Int, Int, Text, Text, Int]
};
pub(super) const SET_TOKENS: &str = "access_token = v.acc, refresh_token = v.ref, \
     token_generation = connections.token_generation + 1, access_expires_at = v.exp, \
     refresh_expires_at = COALESCE(v.rexp, connections.refresh_expires_at), \
     scopes = CASE WHEN v.scp = '' THEN connections.scopes ELSE v.scp END, \
     instance_url = COALESCE(v.inst, connections.instance_url), \
     tokens_updated_at = v.ts, updated_at = v.ts, refresh_uncertain_since = NULL, \
     refresh_interrupted_at = NULL, refresh_sent_at = NULL";
/// The lease guard of a write of `v`: the connection is still leased by instance `v.lease`
/// (leases hold the instance's number, `v.lease` is its name).
macro_rules! leased_by_v {
    () => {
        "connections.lease_owner = (SELECT id FROM instances WHERE name = v.lease)"
    };
}

/// The guards every token write has: our lease, and the tokens we refreshed still stored.
pub(super) const TOKENS_UNCHANGED: &str = concat!(
    "connections.id = v.cid AND connections.token_generation = v.expected AND ",
    leased_by_v!()
);

/// Why a guarded token write touched nothing, from the connection's lease owner as found
/// (`None`: no such connection): another worker's lease, or tokens someone else stored.
pub(super) fn refused(found: Option<Option<String>>, id: &ConnectionId, owner: &str) -> StoreError {
    match found {
        None => StoreError::ConnectionNotFound(id.clone()),
        Some(o) if o.as_deref() != Some(owner) => StoreError::LeaseLost(id.clone()),
        Some(_) => StoreError::TokensChanged(id.clone()),
    }
}

pub(super) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

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
    /// In `Update::healthy`'s `v` order (without the one-connection forms' `row`).
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
            P::Int(Some(self.phase)),
            P::Int(Some(self.category)),
            P::Int(self.http_status),
            P::Int(Some(self.latency_ms)),
            P::Text(self.detail.as_deref()),
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
pub(super) enum Ty {
    Int,
    Text,
    Blob,
}

/// `(CAST($1 AS …), …), ($k, …), …`: the first row's casts give PostgreSQL the column types,
/// which parameters alone (a NULL, say) do not.
pub(super) fn values(backend: Backend, types: &[Ty], rows: usize) -> String {
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

/// One kind of guarded write of connection rows: the columns of `v` (one row of values per
/// connection), what it sets and when it applies, written once for both of its forms.
pub(super) struct Update {
    pub columns: String,
    pub types: Vec<Ty>,
    /// Whether the update names a history row its connection's last check (`v.last`, a
    /// column after `columns`): that row is written first, in the same transaction.
    pub links_history: bool,
    pub set: String,
    pub guard: String,
}

impl Update {
    /// Rotated tokens, under our lease and the generation we refreshed.
    pub(super) fn rotate() -> Self {
        Update {
            columns: TOKEN_COLUMNS.to_owned(),
            types: TOKEN_TYPES.to_vec(),
            links_history: false,
            set: format!("key_id = v.kid, {SET_TOKENS}"),
            guard: TOKENS_UNCHANGED.to_owned(),
        }
    }

    /// "Still healthy", for connections that are healthy and ours.
    pub(super) fn healthy() -> Self {
        use Ty::*;
        Update {
            columns: "cid, lease, ts, next_at, uncertain".to_owned(),
            types: vec![Text, Text, Int, Int, Int],
            links_history: true,
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
            guard: concat!(
                "connections.id = v.cid AND ",
                leased_by_v!(),
                " AND connections.status = 'healthy'"
            )
            .to_owned(),
        }
    }

    /// Refreshed tokens and a healthy result, all as claimed.
    pub(super) fn refreshed() -> Self {
        let mut types = TOKEN_TYPES.to_vec();
        types.push(Ty::Int);
        Update {
            columns: format!("{TOKEN_COLUMNS}, next_at"),
            types,
            links_history: true,
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

    /// `v`'s columns in the one-connection forms on SQLite. A write that names a history row
    /// also takes `row`, the rowid its claim found the connection at (`Claimed::row`): it finds
    /// the row by it rather than through the index of ids, and is refused when the rowid no
    /// longer holds that connection, as when the row changed in any other way (its callers
    /// then write through the slower path, by id). A rotation alone takes no such shortcut:
    /// refused, it would read as tokens changed by someone else, and be dropped.
    fn direct_columns(&self) -> String {
        match self.links_history {
            true => format!("{}, row", self.columns),
            false => self.columns.clone(),
        }
    }

    /// The guard of the one-connection forms.
    fn direct_guard(&self) -> String {
        match self.links_history {
            true => format!("connections.rowid = v.row AND {}", self.guard),
            false => self.guard.clone(),
        }
    }

    /// For one connection on SQLite, with plain parameters (`?1` for `v`'s first column …, then
    /// `row` and `last` when it names a history row): no table of values to build and join.
    pub(super) fn direct(&self) -> String {
        let columns = match self.links_history {
            true => format!("{}, last", self.direct_columns()),
            false => self.direct_columns(),
        };
        let columns: Vec<&str> = columns.split(", ").collect();
        format!(
            "UPDATE connections SET {} WHERE {}",
            numbered(&self.set, &columns),
            numbered(&self.direct_guard(), &columns)
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

pub(super) const HISTORY_COLUMNS: &str = "connection_id, previous_id, instance_id, \
     token_generation, started_at, finished_at, phase_code, category_code, http_status, \
     latency_ms, error";

/// The number of the instance named `name` (a history row's `instance_id`): registered by
/// its claims (`REGISTER_INSTANCE`), which come before any history row of theirs.
pub(super) fn instance_number(name: &str) -> String {
    format!("(SELECT id FROM instances WHERE name = {name})")
}

/// The name of the instance holding connection `$1`'s lease, NULL when none: leases name
/// their instance by its number.
pub(super) const LEASE_OWNER: &str =
    "SELECT (SELECT name FROM instances WHERE id = lease_owner) FROM connections WHERE id = $1";

/// Registers the instance `$1` (the lease owner of the claim it comes before). Inserted only
/// when missing: on PostgreSQL an insert that conflicts would still take a number from the
/// sequence, and every claim runs this.
pub(super) const REGISTER_INSTANCE: &str = "INSERT INTO instances (name) SELECT $1 \
     WHERE NOT EXISTS (SELECT 1 FROM instances WHERE name = $1) ON CONFLICT (name) DO NOTHING";

/// The history row of a finished check, linked to its connection's last check. The caller
/// makes the new row its connection's last (`last_check_id`).
pub(super) fn record_sql(backend: Backend) -> String {
    use Ty::*;
    let types = [Text, Text, Int, Int, Int, Int, Int, Int, Int, Text];
    format!(
        "WITH v (cid, inst, gen, started, finished, ph, cat, st, lat, err) AS (VALUES {}) \
         INSERT INTO checks ({HISTORY_COLUMNS}) \
         SELECT v.cid, (SELECT last_check_id FROM connections c WHERE c.id = v.cid), {}, \
           v.gen, v.started, v.finished, v.ph, v.cat, v.st, v.lat, v.err FROM v",
        values(backend, &types, 1),
        instance_number("v.inst")
    )
}

impl Update {
    /// On SQLite, for one connection: its history row, written only when this update's guard
    /// holds; its parameters are the update's (`?1` … and `row`) then the history row's own
    /// (`HealthyRow::history` without the connection). The update then names it the last
    /// check: in the writer's transaction nothing runs between the two, so the guard holds
    /// for both or for neither, and no savepoint is needed to undo one without the other.
    pub(super) fn guarded_history(&self) -> String {
        let columns = self.direct_columns();
        let columns: Vec<&str> = columns.split(", ").collect();
        let mut own: Vec<String> = (1..=9).map(|i| format!("?{}", columns.len() + i)).collect();
        own[0] = instance_number(&own[0]);
        format!(
            "INSERT INTO checks ({HISTORY_COLUMNS}) SELECT connections.id, \
             connections.last_check_id, {} FROM connections WHERE {}",
            own.join(", "),
            numbered(&self.direct_guard(), &columns)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "last_check_id = ?7 WHERE connections.rowid = ?6 AND connections.id = ?1 \
             AND connections.lease_owner = (SELECT id FROM instances WHERE name = ?2)"
        ));
        assert!(!sql.contains("v."), "{sql}");
        let sql = Update::refreshed().direct();
        assert!(
            sql.contains("access_token = ?5, refresh_token = ?6,"),
            "{sql}"
        );
        assert!(sql.contains("next_check_at = ?12"), "{sql}");
        assert!(sql.contains("last_check_id = ?14"), "{sql}");
        assert!(sql.contains("WHERE connections.rowid = ?13 AND"), "{sql}");
        assert!(!sql.contains("v."), "{sql}");
        // A rotation alone is found by its id: refused, it would be taken for other tokens.
        let sql = Update::rotate().direct();
        assert!(!sql.contains("rowid"), "{sql}");
        assert!(sql.contains("WHERE connections.id = ?1 AND"), "{sql}");
        // Only whole names of v's columns: not `prev.ts`, not `v.unknown`.
        assert_eq!(
            numbered("prev.ts = v.ts, v.unknown", &["ts"]),
            "prev.ts = ?1, v.unknown"
        );
    }

    #[test]
    fn a_guarded_history_row_takes_the_updates_parameters_then_its_own() {
        let sql = Update::healthy().guarded_history();
        assert!(
            sql.contains(
                "SELECT connections.id, connections.last_check_id, \
                 (SELECT id FROM instances WHERE name = ?7), ?8,"
            ),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "?15 FROM connections WHERE connections.rowid = ?6 AND connections.id = ?1 \
             AND connections.lease_owner = (SELECT id FROM instances WHERE name = ?2) \
             AND connections.status = 'healthy'"
            ),
            "{sql}"
        );
        let sql = Update::refreshed().guarded_history();
        assert!(
            sql.contains("last_check_id, (SELECT id FROM instances WHERE name = ?14), ?15"),
            "{sql}"
        );
        assert!(sql.contains("connections.token_generation = ?3"), "{sql}");
        assert!(sql.contains("connections.key_id = ?4"), "{sql}");
    }

    #[test]
    fn values_cast_the_first_row_only() {
        let sql = values(Backend::Postgres, &[Ty::Text, Ty::Blob], 2);
        assert_eq!(sql, "(CAST($1 AS TEXT), CAST($2 AS BYTEA)), ($3, $4)");
        let sql = values(Backend::Sqlite, &[Ty::Int, Ty::Blob], 2);
        assert_eq!(sql, "(CAST(? AS BIGINT), CAST(? AS BLOB)), (?, ?)");
    }
}
