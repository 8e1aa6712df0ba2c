//! Claims, rotations, check results and provider alerts on SQLite.

use super::statements::{
    HealthyRow, LEASE_OWNER, REGISTER_INSTANCE, RefreshedRow, RotateRow, instance_number,
};
use super::*;
use super::{codes, merged};
use crate::events::Event;

const CLAIM_COLUMNS: &str = "key_id, access_token, refresh_token";

/// `chain(id, n)`: the last `$2` checks of connection `$1`, newest first, following each
/// check's `previous_id` from the connection's `last_check_id`.
pub(super) const CHAIN: &str = "chain (id, n) AS ( \
       SELECT last_check_id, CAST(1 AS BIGINT) FROM connections \
       WHERE id = $1 AND last_check_id IS NOT NULL \
       UNION ALL \
       SELECT c.previous_id, chain.n + 1 FROM checks c JOIN chain ON c.id = chain.id \
       WHERE c.previous_id IS NOT NULL AND chain.n < $2)";

/// What a claim finds of the check before it, and leaves for the next: `refresh_sent_at` is set
/// by every claim (a refresh may go out under it) and cleared by whatever ends the check. Found
/// set, it means a worker crashed or stalled with a refresh perhaps in flight, whose answer was
/// never stored: the provider may have rotated the refresh token then, so the connection is
/// uncertain, and interrupted until a definite answer. Marking in the claim costs no write of
/// its own: the claim rewrites the row anyway. `$4` is the claim's time.
const TAKE_OVER: &str = "refresh_uncertain_since = COALESCE(refresh_uncertain_since, refresh_sent_at), \
     refresh_interrupted_at = COALESCE(refresh_interrupted_at, refresh_sent_at), \
     refresh_sent_at = $4";

/// The due connections of provider `$3` at `$4` that no lease holds, oldest due first, at most
/// `$5`, by `key`.
fn due_sql(backend: Backend, key: &str) -> String {
    format!(
        "SELECT {key} FROM connections WHERE provider = $3 AND next_check_at <= $4 \
         AND (lease_expires_at IS NULL OR lease_expires_at < $4) AND set_aside IS NULL \
         ORDER BY next_check_at LIMIT $5{}",
        backend.skip_locked()
    )
}

/// PostgreSQL's claim of up to `$5` due connections of provider `$3` for lease owner `$1`
/// until `$2`; `$4` is now. (SQLite's is `sqlite_claim`.)
pub(super) fn claim_due_sql() -> String {
    let backend = Backend::Postgres;
    let found = backend.found_by("id", &due_sql(backend, "id"));
    format!(
        "UPDATE connections SET lease_owner = {}, lease_expires_at = $2, {TAKE_OVER} \
         WHERE {found} RETURNING {CONNECTION_COLUMNS}, {CLAIM_COLUMNS}",
        instance_number("$1"),
    )
}

/// SQLite's claim in three steps on the writer's connection, inside its transaction: the due
/// rows' rowids, then each row leased, then read. An `UPDATE … RETURNING` reads every column
/// of each old row as well as the new one and keeps the returned rows in a table of its own
/// until the statement ends (SQLite runs RETURNING as a trigger). Counted with callgrind, a
/// claimed row took about 31,000 instructions that way, 26,000 this way.
pub(super) mod sqlite_claim {
    use super::*;

    /// The due rows' rowids (`$3`, `$4`, `$5` as in `claim_due_sql`).
    pub fn due() -> String {
        due_sql(Backend::Sqlite, "rowid")
    }

    /// Leases row `$3` to instance number `$1` until `$2`; `$4` is now.
    pub fn lease() -> String {
        format!(
            "UPDATE connections SET lease_owner = $1, lease_expires_at = $2, {TAKE_OVER} \
             WHERE rowid = $3"
        )
    }

    /// What a claim hands out of row `$1`.
    pub fn read() -> String {
        format!(
            "SELECT {CONNECTION_COLUMNS}, {CLAIM_COLUMNS}{} FROM connections WHERE rowid = $1",
            Backend::Sqlite.row_column()
        )
    }

    /// The number of instance `$1` (registered before), to bind in each row's lease.
    pub fn instance() -> String {
        format!("SELECT {}", instance_number("$1"))
    }
}

impl SqlStore {
    fn claimed_from_row<R: Columns>(
        &self,
        row: &R,
        lease: &Lease,
        now: i64,
    ) -> Result<Claimed, StoreError> {
        let connection = connection_from_row(row)?;
        let tokens = self.tokens_from_row(&connection.id, row)?;
        Ok(Claimed {
            connection,
            tokens,
            started_at: from_ms(now)?,
            lease: lease.clone(),
            row: match self.backend {
                Backend::Sqlite => Some(row.get("row_slot")?),
                Backend::Postgres => None,
            },
        })
    }

    pub(super) async fn claim_due_impl(
        &self,
        q: DueQuery<'_>,
        lease: &Lease,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = to_ms(q.now);
        let due = native::ClaimDue {
            provider: q.provider.as_str().to_owned(),
            now,
            limit: i64::from(q.limit),
            owner: lease.owner.clone(),
            until: to_ms(lease.until),
        };
        // Each backend's claim is one statement, on a connection of its own and through its
        // native driver (`Any` converted every column of thousands of rows a claim).
        match &self.checks_writer {
            ChecksWriter::Sqlite(writer) => {
                let rows = batch::ask(writer, |done| native::Work::Claim(due, done)).await?;
                self.claimed_rows(&rows, &q, lease, now).await
            }
            ChecksWriter::Postgres { claims, .. } => {
                sqlx::query(REGISTER_INSTANCE)
                    .bind(&due.owner)
                    .execute(claims)
                    .await?;
                let rows = sqlx::query(&claim_due_sql())
                    .bind(&due.owner)
                    .bind(due.until)
                    .bind(&due.provider)
                    .bind(due.now)
                    .bind(due.limit)
                    .fetch_all(claims)
                    .await?;
                self.claimed_rows(&rows, &q, lease, now).await
            }
        }
    }

    /// The claimed rows read; a row that cannot be read is set aside, in a transaction of its
    /// own (the claim committed; its lease keeps the row ours meanwhile).
    async fn claimed_rows<R: Columns>(
        &self,
        rows: &[R],
        q: &DueQuery<'_>,
        lease: &Lease,
        now: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut claimed = Vec::with_capacity(rows.len());
        let mut aside = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            // Opening a batch's tokens takes milliseconds: the checks in flight go on meanwhile.
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
            match self.claimed_from_row(row, lease, now) {
                Ok(c) => claimed.push(c),
                Err(
                    e @ (StoreError::Crypto(_)
                    | StoreError::Corrupt(_)
                    | StoreError::Database(sqlx::Error::ColumnDecode { .. })),
                ) => {
                    aside.push((row.get::<String>("id")?, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        if !aside.is_empty() {
            let mut tx = self.write().await?;
            let alert: Vec<Event> = Self::set_aside(&mut tx, q, &aside)
                .await?
                .into_iter()
                .collect();
            events::write(&mut tx, self.backend, &alert, now).await?;
            tx.commit().await?;
        }
        claimed.sort_by_key(|c| c.connection.next_check_at);
        Ok(claimed)
    }

    /// One row that cannot be read must not stop its provider: it leaves the claims, with its
    /// reason, and the operator is told (the owner is not: nothing is wrong with the grant).
    async fn set_aside(
        tx: &mut sqlx::AnyConnection,
        q: &DueQuery<'_>,
        aside: &[(String, String)],
    ) -> Result<Option<Event>, StoreError> {
        for (id, why) in aside {
            sqlx::query(
                "UPDATE connections SET set_aside = $1, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $2",
            )
            .bind(why)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tracing::error!(
                connection = %id,
                provider = %q.provider,
                "connection set aside: {why}; the provider's other connections are checked as usual"
            );
        }
        let ids: Vec<&str> = aside.iter().map(|(id, _)| id.as_str()).collect();
        let detail = format!(
            "connection(s) {} set aside: their stored tokens cannot be opened ({}). A key missing \
             from previous_key_files, or rows altered or copied from elsewhere, cause this. \
             `credwatch connection show ID` names them; a restart tries them again, and \
             reauthorizing one replaces its tokens",
            ids.join(", "),
            aside[0].1
        );
        Self::open_alert_in(
            tx,
            q.provider,
            ALERT_UNREADABLE_TOKENS,
            &detail,
            q.now,
            q.now,
            q.operator,
        )
        .await
    }

    pub(super) async fn retry_set_aside_impl(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        let retried = sqlx::query(
            "UPDATE connections SET set_aside = NULL, next_check_at = $1 WHERE set_aside IS NOT NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if retried > 0 {
            // Found again, they open a new alert: the operator restarted for exactly that.
            sqlx::query(
                "UPDATE provider_alerts SET closed_at = $1 WHERE kind = $2 AND closed_at IS NULL",
            )
            .bind(now)
            .bind(ALERT_UNREADABLE_TOKENS)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(retried)
    }

    pub(super) async fn claim_impl(
        &self,
        id: &ConnectionId,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        sqlx::query(REGISTER_INSTANCE)
            .bind(&lease.owner)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "UPDATE connections SET lease_owner = {}, lease_expires_at = $2, {TAKE_OVER} \
             WHERE id = $3 AND (lease_expires_at IS NULL OR lease_expires_at < $4) \
             RETURNING {CONNECTION_COLUMNS}, {CLAIM_COLUMNS}{}",
            instance_number("$1"),
            self.backend.row_column()
        ))
        .bind(&lease.owner)
        .bind(to_ms(lease.until))
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let owner: Option<Option<String>> = sqlx::query_scalar(LEASE_OWNER)
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            return match owner {
                None => Err(StoreError::ConnectionNotFound(id.clone())),
                Some(owner) => Ok(ClaimOutcome::Busy {
                    owner: owner.unwrap_or_default(),
                }),
            };
        };
        let c = self.claimed_from_row(&row, lease, now)?;
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed(Box::new(c)))
    }

    pub(super) async fn release_impl(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&format!(
            "UPDATE connections SET lease_owner = NULL, lease_expires_at = NULL, \
               refresh_sent_at = NULL \
             WHERE id = $1 AND lease_owner = {}",
            instance_number("$2")
        ))
        .bind(claimed.connection.id.as_str())
        .bind(&claimed.lease.owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn rescue_rotation_impl(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError> {
        let row = self.rotate_row(claimed, rotation)?;
        let backend = self.backend;
        self.batched(
            false,
            |_| false,
            move |tx| Box::pin(async move { merged::rescue(tx, backend, &row).await }),
        )
        .await
    }

    pub(super) async fn save_rotation_impl(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError> {
        let row = self.rotate_row(claimed, rotation)?;
        self.store_rotation(row).await
    }

    pub(super) async fn finish_refreshed_impl(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
        result: &CheckResult,
    ) -> Result<bool, StoreError> {
        let tokens = self.rotate_row(claimed, rotation)?;
        let check = claimed_row(claimed, result);
        self.store_refreshed(RefreshedRow { tokens, check }).await
    }

    /// New tokens sealed for storing.
    fn rotate_row(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<RotateRow, StoreError> {
        let id = claimed.connection.id.clone();
        let t = rotation.tokens;
        let sealed = self.seal_tokens(&id, t, claimed.tokens.refresh_token.as_ref())?;
        Ok(RotateRow {
            id,
            owner: claimed.lease.owner.clone(),
            expected: rotation.expected_generation,
            key_id: sealed.key_id,
            access: sealed.access,
            refresh: sealed.refresh,
            expires_at: t.expires_at.map(to_ms),
            refresh_expires_at: t.refresh_expires_at.map(to_ms),
            scopes: t.scopes.join(" "),
            instance_url: t.instance_url.clone(),
            now: to_ms(rotation.now),
        })
    }

    pub(super) async fn finish_check_impl(
        &self,
        claimed: &Claimed,
        r: &CheckResult,
    ) -> Result<Applied, StoreError> {
        if r.transition == Transition::Healthy
            && self.store_healthy(claimed_row(claimed, r)).await?
        {
            // Most checks: merged with other checks' into a few statements (see `merged`).
            return Ok(Applied::unchanged(ConnectionStatus::Healthy));
        }
        let (id, owner, r) = (
            claimed.connection.id.clone(),
            claimed.lease.owner.clone(),
            r.clone(),
        );
        let backend = self.backend;
        // A result that lost its lease still goes into the history.
        let keep = |e: &StoreError| matches!(e, StoreError::LeaseLost(_));
        self.batched(true, keep, move |tx| {
            Box::pin(async move { Self::finish_check_in(backend, tx, &id, &owner, &r).await })
        })
        .await
    }

    async fn finish_check_in(
        backend: Backend,
        tx: &mut sqlx::AnyConnection,
        id: &ConnectionId,
        owner: &str,
        r: &CheckResult,
    ) -> Result<Applied, StoreError> {
        let now = to_ms(r.finished_at);
        merged::record(tx, backend, &healthy_row(id, owner, r)).await?;

        let row = sqlx::query(&format!(
            "SELECT provider, status, reason, status_since, token_generation, \
               (SELECT name FROM instances WHERE id = lease_owner) AS lease_owner, \
               consecutive_failures FROM connections WHERE id = $1{}",
            backend.for_update()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        let lease_owner: Option<String> = row.try_get("lease_owner")?;
        if lease_owner.as_deref() != Some(owner) {
            // The check happened and stays in the history; its verdict is not ours to apply.
            return Err(StoreError::LeaseLost(id.clone()));
        }
        let provider: ProviderId = parse(row.try_get("provider")?)?;
        let before: ConnectionStatus = parse(row.try_get("status")?)?;
        let mut reason: Option<String> = row.try_get("reason")?;
        let mut since: i64 = row.try_get("status_since")?;
        let spell_began = since;
        let generation: i64 = row.try_get("token_generation")?;
        let mut failures: i64 = row.try_get("consecutive_failures")?;
        let mut next = to_ms(r.next_check_at);
        let mut stale = false;
        let after = match r.transition {
            Transition::Healthy => {
                failures = 0;
                reason = None;
                ConnectionStatus::Healthy
            }
            Transition::Degraded => {
                failures += 1;
                if before == ConnectionStatus::Broken {
                    ConnectionStatus::Broken
                } else {
                    reason = Some(r.category.as_str().to_owned());
                    ConnectionStatus::Degraded
                }
            }
            Transition::Broken if generation != r.generation => {
                // Someone stored other tokens since: the verdict is about tokens that are gone.
                stale = true;
                next = now;
                before
            }
            Transition::Broken => {
                failures += 1;
                reason = Some(r.category.as_str().to_owned());
                ConnectionStatus::Broken
            }
            Transition::Unchanged => before,
        };
        if after != before {
            since = now;
        }
        sqlx::query(
            "UPDATE connections SET status = $1, reason = $2, status_since = $3, \
               consecutive_failures = $4, last_check_at = $5, next_check_at = $6, \
               lease_owner = NULL, lease_expires_at = NULL, updated_at = $5, \
               refresh_uncertain_since = CASE $8 \
                 WHEN 1 THEN COALESCE(refresh_uncertain_since, refresh_sent_at, $5) \
                 WHEN 0 THEN NULL ELSE refresh_uncertain_since END, \
               refresh_interrupted_at = CASE $8 WHEN 0 THEN NULL ELSE refresh_interrupted_at END, \
               refresh_sent_at = NULL \
             WHERE id = $7",
        )
        .bind(after.as_str())
        .bind(&reason)
        .bind(since)
        .bind(failures)
        .bind(now)
        .bind(next)
        .bind(id.as_str())
        .bind(r.refresh_uncertain.map(i64::from))
        .execute(&mut *tx)
        .await?;
        let mut applied = Applied {
            before,
            after,
            incident_opened: None,
            incident_closed: None,
            stale,
            paused: Vec::new(),
            resumed: Vec::new(),
        };
        let mut events = Vec::new();
        match (before, after) {
            (b, ConnectionStatus::Broken) if b != ConnectionStatus::Broken => {
                events.push(Event::ConnectionBroken {
                    connection: id.clone(),
                    reason: crate::notices::explain(r.category, provider.as_str()),
                    provider: provider.clone(),
                    category: r.category,
                    since: r.finished_at,
                })
            }
            (ConnectionStatus::Healthy, ConnectionStatus::Degraded) => {
                events.push(Event::ConnectionDegraded {
                    connection: id.clone(),
                    provider: provider.clone(),
                    category: r.category,
                    since: r.finished_at,
                })
            }
            (b, ConnectionStatus::Healthy) if b != ConnectionStatus::Healthy => {
                events.push(Event::ConnectionRecovered {
                    connection: id.clone(),
                    provider: provider.clone(),
                    was: b,
                    since: from_ms(spell_began)?,
                })
            }
            _ => {}
        }
        if after == ConnectionStatus::Broken && before != ConnectionStatus::Broken {
            let incident = sqlx::query_scalar(
                "INSERT INTO incidents (connection_id, category, detail, opened_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(id.as_str())
            .bind(r.category.as_str())
            .bind(&r.detail)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let why = format!("connection {id} is broken: {}", r.category);
            applied.paused =
                Self::pause_dependents(&mut *tx, id, incident, &why, now, &mut events).await?;
            Self::notify_broken(&mut *tx, id, incident, r, now).await?;
            applied.incident_opened = Some(incident);
        }
        if before == ConnectionStatus::Broken && after != ConnectionStatus::Broken {
            applied.incident_closed = sqlx::query_scalar(
                "UPDATE incidents SET closed_at = $1, closed_by = 'check' \
                 WHERE connection_id = $2 AND closed_at IS NULL RETURNING id",
            )
            .bind(now)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        }
        if after == ConnectionStatus::Healthy && before != ConnectionStatus::Healthy {
            applied.resumed =
                Self::resume_ready(&mut *tx, id, applied.incident_closed, now, &mut events).await?;
        }
        if let Some(incident) = applied.incident_closed {
            Self::notify_reconnected(&mut *tx, id, incident, &applied.resumed, now).await?;
            // A link is for one incident: once it is over, the links sent about it end too.
            sqlx::query(
                "UPDATE reauth_links SET expires_at = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END WHERE incident_id = $2",
            )
            .bind(now)
            .bind(incident)
            .execute(&mut *tx)
            .await?;
        }
        events::write(tx, backend, &events, now).await?;
        Ok(applied)
    }

    pub(super) async fn spread_overdue_impl(
        &self,
        now: DateTime<Utc>,
        window: std::time::Duration,
        keep: u32,
    ) -> Result<u64, StoreError> {
        let now = to_ms(now);
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let mut tx = self.write().await?;
        let overdue: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM connections WHERE next_check_at < $1 \
             AND (lease_expires_at IS NULL OR lease_expires_at < $1)",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if overdue <= i64::from(keep) {
            return Ok(0);
        }
        let moved = sqlx::query(&format!(
            "UPDATE connections SET next_check_at = $1 + {} \
             WHERE next_check_at < $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1)",
            self.backend.random_below("$2")
        ))
        .bind(now)
        .bind(window)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(moved)
    }

    pub(super) async fn prune_history_impl(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        /// Rows a transaction removes: the sweep's writes wait for the database's one writer.
        const BATCH: i64 = 2_000;
        // Rows are numbered in the order they were written, each when its check finished: the
        // old ones are those before the first that finished since `before`. Found in id order,
        // the search reads no more than the rows it will remove (and the last checks kept).
        let cut: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT id FROM checks WHERE finished_at >= $1 ORDER BY id LIMIT 1), \
               (SELECT MAX(id) + 1 FROM checks), 0)",
        )
        .bind(to_ms(before))
        .fetch_one(&self.pool)
        .await?;
        let (mut after, mut removed) = (0_i64, 0_u64);
        while removed < limit {
            let mut tx = self.write().await?;
            let upto: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM (SELECT id FROM checks WHERE id > $1 AND id < $2 \
                 ORDER BY id LIMIT $3) AS batch",
            )
            .bind(after)
            .bind(cut)
            .bind(BATCH.min(i64::try_from(limit - removed).unwrap_or(i64::MAX)))
            .fetch_one(&mut *tx)
            .await?;
            let Some(upto) = upto else { break };
            // A connection's last check stays: it says why the connection is as it is. The
            // check before it may go, which ends the chain there.
            removed += sqlx::query(
                "DELETE FROM checks WHERE id > $1 AND id <= $2 AND NOT EXISTS \
                 (SELECT 1 FROM connections c \
                  WHERE c.id = checks.connection_id AND c.last_check_id = checks.id)",
            )
            .bind(after)
            .bind(upto)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            after = upto;
        }
        Ok(removed)
    }

    pub(super) async fn recent_checks_impl(
        &self,
        id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<CheckRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE {CHAIN} \
             SELECT started_at, finished_at, COALESCE(i.name, '') AS instance, phase, category, \
               http_status, latency_ms, error \
             FROM check_history AS checks LEFT JOIN instances i ON i.id = checks.instance_id \
             WHERE checks.id IN (SELECT id FROM chain) ORDER BY checks.id DESC"
        ))
        .bind(id.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CheckRecord {
                    started_at: from_ms(r.try_get("started_at")?)?,
                    finished_at: opt_time(r.try_get("finished_at")?)?,
                    instance: r.try_get("instance")?,
                    phase: opt_parse(r, "phase")?,
                    category: opt_parse(r, "category")?,
                    http_status: r
                        .try_get::<Option<i64>, _>("http_status")?
                        .and_then(|s| u16::try_from(s).ok()),
                    latency_ms: r
                        .try_get::<Option<i64>, _>("latency_ms")?
                        .and_then(|l| u64::try_from(l).ok()),
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }
}

/// The result of a check of `claimed`, found where the claim found it.
fn claimed_row(claimed: &Claimed, r: &CheckResult) -> HealthyRow {
    HealthyRow {
        row: claimed.row,
        ..healthy_row(&claimed.connection.id, &claimed.lease.owner, r)
    }
}

/// A result as merged rows carry it (its history part is every result's).
fn healthy_row(id: &ConnectionId, owner: &str, r: &CheckResult) -> HealthyRow {
    HealthyRow {
        id: id.clone(),
        row: None,
        owner: owner.to_owned(),
        now: to_ms(r.finished_at),
        next_check_at: to_ms(r.next_check_at),
        uncertain: r.refresh_uncertain.map(i64::from),
        started_at: to_ms(r.started_at),
        phase: codes::phase_number(r.phase),
        category: codes::category_number(r.category),
        http_status: r.http_status.map(i64::from),
        latency_ms: i64::try_from(r.latency_ms).unwrap_or(i64::MAX),
        detail: codes::stored_detail(r.phase, r.category, &r.detail).map(str::to_owned),
        generation: r.generation,
    }
}
