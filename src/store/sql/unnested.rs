//! PostgreSQL's form of the writes nearly every check makes (rotated tokens; a healthy result
//! with its history row; both at once): one statement per kind of write whatever the number of
//! rows, each column of the rows bound as one array and read back with `unnest`. A replica's
//! group of finished checks is then one round trip and one commit: the statement's own. (A
//! table of values per chunk of rows needed a text per chunk size, and a transaction with a
//! round trip per chunk and per statement; those round trips were the replica's limit.)
//!
//! A history row and the update that names it the connection's last check are one statement:
//! the connections are locked first, under the update's own guard, so the history row is
//! written exactly for the rows the update then applies to.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::{PgConnection, PgPool, Postgres};

use super::statements::*;
use super::*;

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// A history row's values that are not already in its update's `v`.
const HISTORY_V: &str = "h_inst, h_gen, h_started, h_finished, h_ph, h_cat, h_st, h_lat, h_err";
const HISTORY_TYPES: [Ty; 9] = {
    use Ty::*;
    [Text, Int, Int, Int, Int, Int, Int, Int, Text]
};

/// `unnest($1::text[], …) AS v (columns)`.
fn unnest(types: &[Ty], columns: &str) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let name = match ty {
                Ty::Int => "int8",
                Ty::Text => "text",
                Ty::Blob => "bytea",
            };
            format!("${}::{name}[]", i + 1)
        })
        .collect();
    format!("unnest({}) AS v ({columns})", arrays.join(", "))
}

/// A statement's text and the types of its arrays, made once per writer.
pub(super) struct Statement {
    sql: String,
    types: Vec<Ty>,
}

impl Statement {
    pub(super) fn rotate() -> Self {
        Statement {
            sql: rotate_sql(),
            types: Update::rotate().types,
        }
    }

    /// `update` with its history row (`linked_sql`).
    pub(super) fn linked(update: &Update) -> Self {
        let mut types = update.types.clone();
        types.extend(HISTORY_TYPES);
        Statement {
            sql: linked_sql(update),
            types,
        }
    }
}

/// Rotated tokens: `RETURNING` the id and the new generation of each row applied.
fn rotate_sql() -> String {
    let u = Update::rotate();
    format!(
        "UPDATE connections SET {} FROM {} WHERE {} \
         RETURNING connections.id, connections.token_generation",
        u.set,
        unnest(&u.types, &u.columns),
        u.guard
    )
}

/// `update` with the history row it names the last check: `RETURNING` the id of each row
/// applied. The connections are locked under the update's guard first (so a row changed by
/// someone else meanwhile is judged as it is now), the history rows are written for the
/// locked ones, and the update links each to its history row.
fn linked_sql(update: &Update) -> String {
    let mut types = update.types.clone();
    types.extend(HISTORY_TYPES);
    let guard = &update.guard;
    format!(
        "WITH v AS (SELECT * FROM {unnest}), \
         ours AS (SELECT connections.id, connections.last_check_id FROM connections \
                  JOIN v ON {guard} FOR UPDATE OF connections), \
         h AS (INSERT INTO checks ({HISTORY_COLUMNS}) \
               SELECT v.cid, ours.last_check_id, i.id, v.h_gen, v.h_started, \
                      v.h_finished, v.h_ph, v.h_cat, v.h_st, v.h_lat, v.h_err \
               FROM v JOIN ours ON ours.id = v.cid LEFT JOIN instances i ON i.name = v.h_inst \
               RETURNING connection_id, id) \
         UPDATE connections SET {set} \
         FROM (SELECT v.*, h.id AS last FROM v JOIN h ON h.connection_id = v.cid) AS v \
         WHERE {guard} RETURNING connections.id",
        unnest = unnest(&types, &format!("{}, {HISTORY_V}", update.columns)),
        set = update.set,
    )
}

/// One column of a group's rows.
enum Column<'a> {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Blob(Vec<Option<&'a [u8]>>),
}

/// The rows' values, column by column, bound as arrays in `types` order.
fn bind_columns<'q>(
    mut q: PgQuery<'q>,
    types: &[Ty],
    rows: impl ExactSizeIterator<Item = Vec<P<'q>>>,
) -> Result<PgQuery<'q>, StoreError> {
    let n = rows.len();
    let mut columns: Vec<Column<'q>> = types
        .iter()
        .map(|ty| match ty {
            Ty::Int => Column::Int(Vec::with_capacity(n)),
            Ty::Text => Column::Text(Vec::with_capacity(n)),
            Ty::Blob => Column::Blob(Vec::with_capacity(n)),
        })
        .collect();
    for values in rows {
        if values.len() != types.len() {
            let e = format!("{} values for {} columns", values.len(), types.len());
            return Err(StoreError::Commit(e));
        }
        for (i, (column, value)) in columns.iter_mut().zip(values).enumerate() {
            match (column, value) {
                (Column::Int(c), P::Int(v)) => c.push(v),
                (Column::Text(c), P::Text(v)) => c.push(v),
                (Column::Blob(c), P::Blob(v)) => c.push(v),
                _ => {
                    return Err(StoreError::Commit(format!(
                        "column {}: another type",
                        i + 1
                    )));
                }
            }
        }
    }
    for column in columns {
        q = match column {
            Column::Int(c) => q.bind(c),
            Column::Text(c) => q.bind(c),
            Column::Blob(c) => q.bind(c),
        };
    }
    Ok(q)
}

/// A row of a group: its values in its statement's column order, and its connection.
pub(super) trait Row {
    fn values(&self) -> Vec<P<'_>>;
    fn connection(&self) -> &ConnectionId;
}

impl Row for RotateRow {
    fn values(&self) -> Vec<P<'_>> {
        self.params().to_vec()
    }
    fn connection(&self) -> &ConnectionId {
        &self.id
    }
}

/// A history row's own values (its connection is the update's `cid`).
fn history_values(check: &HealthyRow) -> impl Iterator<Item = P<'_>> {
    check.history().into_iter().skip(1)
}

impl Row for HealthyRow {
    fn values(&self) -> Vec<P<'_>> {
        self.params()
            .into_iter()
            .chain(history_values(self))
            .collect()
    }
    fn connection(&self) -> &ConnectionId {
        &self.id
    }
}

impl Row for RefreshedRow {
    fn values(&self) -> Vec<P<'_>> {
        self.params().chain(history_values(&self.check)).collect()
    }
    fn connection(&self) -> &ConnectionId {
        &self.tokens.id
    }
}

/// `rows` in rounds in which each connection appears once (a statement's rows join on it);
/// in practice one round.
fn rounds<R: Row>(rows: &[R]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<(HashSet<&ConnectionId>, Vec<usize>)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let id = row.connection();
        match rounds.iter_mut().find(|(seen, _)| !seen.contains(id)) {
            Some((seen, members)) => {
                seen.insert(id);
                members.push(i);
            }
            None => rounds.push((HashSet::from([id]), vec![i])),
        }
    }
    rounds.into_iter().map(|(_, members)| members).collect()
}

/// Runs the statement over `rows` in rounds, each its own statement and commit. Answers, per
/// row, what `RETURNING` gave for its connection after the id (`None`: not applied), or its
/// round's error.
async fn run<R: Row>(
    conn: &mut PgConnection,
    Statement { sql, types }: &Statement,
    rows: &[R],
) -> Vec<Result<Option<Option<i64>>, StoreError>> {
    let mut out: Vec<Result<Option<Option<i64>>, StoreError>> =
        (0..rows.len()).map(|_| Ok(None)).collect();
    for round in rounds(rows) {
        let values = round.iter().map(|&i| rows[i].values());
        let returned: Result<HashMap<String, Option<i64>>, StoreError> = async {
            let q = bind_columns(sqlx::query(sql), types, values)?;
            let mut by_id = HashMap::with_capacity(round.len());
            for row in q.fetch_all(&mut *conn).await? {
                use sqlx::Row as _;
                let more = match row.len() > 1 {
                    true => Some(row.try_get::<i64, _>(1)?),
                    false => None,
                };
                by_id.insert(row.try_get::<String, _>(0)?, more);
            }
            Ok(by_id)
        }
        .await;
        match returned {
            Ok(mut by_id) => {
                for &i in &round {
                    out[i] = Ok(by_id.remove(rows[i].connection().as_str()));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for &i in &round {
                    out[i] = Err(StoreError::Commit(e.clone()));
                }
            }
        }
    }
    out
}

/// Stores rotated tokens: each row's new generation, or why it was refused (its lease or its
/// tokens changed; nothing written for it).
pub(super) async fn rotate(
    conn: &mut PgConnection,
    statement: &Statement,
    rows: &[RotateRow],
) -> Vec<Result<i64, StoreError>> {
    let results = run(conn, statement, rows).await;
    let mut out = Vec::with_capacity(rows.len());
    for (row, result) in rows.iter().zip(results) {
        out.push(match result {
            Ok(Some(Some(generation))) => Ok(generation),
            Ok(_) => {
                // Which guard refused it: the lease or the tokens?
                sqlx::query_scalar(super::statements::LEASE_OWNER)
                    .bind(row.id.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::from)
                    .and_then(|found| Err(refused(found, &row.id, &row.owner)))
            }
            Err(e) => Err(e),
        });
    }
    out
}

/// Stores healthy results (with refreshed tokens, for `RefreshedRow`s) and their history rows:
/// `false` for a row not applied (nothing written for it) because anything is not as claimed.
pub(super) async fn linked<R: Row>(
    conn: &mut PgConnection,
    statement: &Statement,
    rows: &[R],
) -> Vec<Result<bool, StoreError>> {
    run(conn, statement, rows)
        .await
        .into_iter()
        .map(|r| r.map(|applied| applied.is_some()))
        .collect()
}

/// A pool of the native driver, for the group writers (arrays are not in the `Any` driver)
/// and for claims (whose thousands of rows `Any` converted column by column).
pub(super) async fn pool(url: &str, connections: u32) -> Result<PgPool, StoreError> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(ConnectionId);
    impl Row for One {
        fn values(&self) -> Vec<P<'_>> {
            vec![P::Text(Some(self.0.as_str()))]
        }
        fn connection(&self) -> &ConnectionId {
            &self.0
        }
    }

    #[test]
    fn a_connection_twice_in_a_group_goes_in_a_later_round() {
        let (a, b) = (ConnectionId::generate(), ConnectionId::generate());
        let rows = [
            One(a.clone()),
            One(b.clone()),
            One(a.clone()),
            One(a),
            One(b),
        ];
        assert_eq!(rounds(&rows), [vec![0, 1], vec![2, 4], vec![3]]);
    }

    #[test]
    fn each_column_is_one_typed_array() {
        let sql = linked_sql(&Update::healthy());
        assert!(
            sql.starts_with(
                "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
                 $5::int8[], $6::text[], $7::int8[]"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("AS v (cid, lease, ts, next_at, uncertain, h_inst, h_gen"),
            "{sql}"
        );
        assert!(sql.contains("FOR UPDATE OF connections"), "{sql}");
        assert!(
            rotate_sql().contains("$5::bytea[], $6::bytea[]"),
            "{}",
            rotate_sql()
        );
    }
}
