//! Hand-out reads in groups. A hand-out is one small read, and on SQLite each query is a trip
//! to the connection's worker thread and back (two thread wake-ups): at tens of thousands a
//! second those trips, not the reads, use the CPU. Reads asked at the same moment share one
//! `WHERE id IN (...)` query instead; a lone read is a group of one, so nothing waits for a
//! group to fill. Nothing is cached: every answer is what the database holds now.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::*;

pub(super) type Asked = (ConnectionId, oneshot::Sender<Result<Handout, StoreError>>);

/// Reads sharing one query at most.
const MAX_GROUP: usize = 64;
/// Groups read at once: one per core keeps both busy while a query runs.
pub(super) const READERS: usize = 2;

const COLUMNS: &str = "id, provider, status, reason, status_since, token_generation, \
    access_expires_at, scopes, last_check_at, next_check_at, key_id, access_token";

/// Takes what is asked, reads it as one query, answers each. Ends when the store is dropped.
pub(super) async fn reader(
    pool: AnyPool,
    keyring: Arc<Keyring>,
    asked: Arc<Mutex<mpsc::Receiver<Asked>>>,
    closing: tokio_util::sync::CancellationToken,
) {
    loop {
        let group = {
            let mut asked = asked.lock().await;
            let Some(first) = super::next(&mut asked, &closing).await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match asked.try_recv() {
                    Ok(a) => group.push(a),
                    Err(_) => break,
                }
            }
            group
        };
        read_group(&pool, &keyring, group).await;
    }
}

async fn read_group(pool: &AnyPool, keyring: &Keyring, group: Vec<Asked>) {
    let params: Vec<String> = (1..=group.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM connections WHERE id IN ({})",
        params.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (id, _) in &group {
        query = query.bind(id.as_str());
    }
    let rows = match query.fetch_all(pool).await {
        Ok(rows) => rows,
        Err(_) => {
            // Each on its own, so each caller gets the error about its own read.
            for (id, answer) in group {
                let _ = answer.send(read_one(pool, keyring, &id).await);
            }
            return;
        }
    };
    // The same connection may be asked for more than once in a group.
    let found: std::collections::HashMap<String, &AnyRow> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>("id").ok().map(|id| (id, r)))
        .collect();
    for (id, answer) in group {
        let result = match found.get(id.as_str()) {
            Some(row) => from_row(keyring, &id, row),
            None => Err(StoreError::ConnectionNotFound(id.clone())),
        };
        let _ = answer.send(result);
    }
}

/// One read on its own: the fallback when grouping is not possible.
pub(super) async fn read_one(
    pool: &AnyPool,
    keyring: &Keyring,
    id: &ConnectionId,
) -> Result<Handout, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM connections WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
    from_row(keyring, id, &row)
}

fn from_row(keyring: &Keyring, id: &ConnectionId, row: &AnyRow) -> Result<Handout, StoreError> {
    let key_id: String = row.try_get("key_id")?;
    let sealed: Vec<u8> = row.try_get("access_token")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(Handout {
        id: id.clone(),
        provider: parse(row.try_get("provider")?)?,
        status: parse(row.try_get("status")?)?,
        reason: row.try_get("reason")?,
        since: from_ms(row.try_get("status_since")?)?,
        token_generation: row.try_get("token_generation")?,
        access_expires_at: opt_time(row.try_get("access_expires_at")?)?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        last_check_at: opt_time(row.try_get("last_check_at")?)?,
        next_check_at: from_ms(row.try_get("next_check_at")?)?,
        access_token: match Keyring::is_pair(&sealed) {
            true => {
                keyring
                    .open_pair(&key_id, &sealed, &token_context(id, "access_token"))?
                    .0
            }
            false => keyring.open(&key_id, &sealed, &token_context(id, "access_token"))?,
        },
    })
}
