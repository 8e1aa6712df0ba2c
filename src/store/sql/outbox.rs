//! The outbox: notices queued in the transaction of the change that causes them, and claimed
//! by the mailer under a lease. `dedupe_key` makes "one notice per incident" a constraint.

use super::*;

const OUTBOX_COLUMNS: &str =
    "id, kind, recipient, connection_id, incident_id, payload, attempts, created_at";

impl SqlStore {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enqueue(
        tx: &mut sqlx::AnyConnection,
        kind: NoticeKind,
        recipient: &str,
        dedupe_key: &str,
        connection: Option<&ConnectionId>,
        incident: Option<i64>,
        payload: &str,
        now: i64,
        not_before: i64,
    ) -> Result<bool, StoreError> {
        let queued = sqlx::query(
            "INSERT INTO outbox (kind, recipient, dedupe_key, connection_id, incident_id, payload, \
               created_at, not_before, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(recipient)
        .bind(dedupe_key)
        .bind(connection.map(ConnectionId::as_str))
        .bind(incident)
        .bind(payload)
        .bind(now)
        .bind(not_before)
        .execute(&mut *tx)
        .await?;
        Ok(queued.rows_affected() == 1)
    }

    /// The owner's notice of a new incident, and the incident's first reminder time.
    pub(super) async fn notify_broken(
        tx: &mut sqlx::AnyConnection,
        connection: &ConnectionId,
        incident: i64,
        r: &CheckResult,
        now: i64,
    ) -> Result<(), StoreError> {
        let owner: String = sqlx::query_scalar("SELECT owner_email FROM connections WHERE id = $1")
            .bind(connection.as_str())
            .fetch_one(&mut *tx)
            .await?;
        Self::enqueue(
            tx,
            NoticeKind::CredentialsExpired,
            &owner,
            &format!("incident:{incident}:expired"),
            Some(connection),
            Some(incident),
            "{}",
            now,
            to_ms(r.notify_at),
        )
        .await?;
        sqlx::query("UPDATE incidents SET next_reminder_at = $1 WHERE id = $2")
            .bind(r.first_reminder_at.map(to_ms))
            .bind(incident)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    pub(super) async fn notify_reconnected(
        tx: &mut sqlx::AnyConnection,
        connection: &ConnectionId,
        incident: i64,
        resumed: &[PipelineId],
        now: i64,
    ) -> Result<(), StoreError> {
        let owner: String = sqlx::query_scalar("SELECT owner_email FROM connections WHERE id = $1")
            .bind(connection.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let payload = serde_json::json!({ "resumed": resumed }).to_string();
        Self::enqueue(
            tx,
            NoticeKind::Reconnected,
            &owner,
            &format!("incident:{incident}:reconnected"),
            Some(connection),
            Some(incident),
            &payload,
            now,
            now,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn queue_reminders_impl(
        &self,
        now: DateTime<Utc>,
        reminders: &[std::time::Duration],
    ) -> Result<u64, StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        let due = sqlx::query(
            "SELECT i.id, i.connection_id, i.opened_at, i.reminders_sent, c.owner_email \
             FROM incidents i JOIN connections c ON c.id = i.connection_id \
             WHERE i.closed_at IS NULL AND i.next_reminder_at IS NOT NULL AND i.next_reminder_at <= $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = 0;
        for row in &due {
            let incident: i64 = row.try_get("id")?;
            let connection: ConnectionId = parse(row.try_get("connection_id")?)?;
            let sent: i64 = row.try_get("reminders_sent")?;
            let opened: i64 = row.try_get("opened_at")?;
            let n = sent + 1;
            let payload = serde_json::json!({ "reminder": n }).to_string();
            if Self::enqueue(
                &mut tx,
                NoticeKind::Reminder,
                &row.try_get::<String, _>("owner_email")?,
                &format!("incident:{incident}:reminder:{n}"),
                Some(&connection),
                Some(incident),
                &payload,
                now,
                now,
            )
            .await?
            {
                queued += 1;
            }
            let next = usize::try_from(n)
                .ok()
                .and_then(|i| reminders.get(i))
                .map(|d| opened + i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            sqlx::query(
                "UPDATE incidents SET reminders_sent = $1, next_reminder_at = $2 WHERE id = $3",
            )
            .bind(n)
            .bind(next)
            .bind(incident)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(queued)
    }

    pub(super) async fn queue_expiring_impl(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let now = to_ms(now);
        let until = now.saturating_add(i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.write().await?;
        let queued: Vec<String> = sqlx::query_scalar(
            "INSERT INTO outbox (kind, recipient, dedupe_key, connection_id, payload, created_at, \
               not_before, next_attempt_at) \
             SELECT 'expiring_soon', owner_email, 'expiring:' || id || ':' || refresh_expires_at, id, \
               '{}', $1, $1, $1 \
             FROM connections WHERE status != 'broken' AND refresh_expires_at > $1 \
               AND refresh_expires_at <= $2 \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING connection_id",
        )
        .bind(now)
        .bind(until)
        .fetch_all(&mut *tx)
        .await?;
        // The platform hears of each once too: in the same transaction as the notice.
        let mut expiring = Vec::with_capacity(queued.len());
        for id in &queued {
            let (provider, ends): (String, i64) = sqlx::query_as(
                "SELECT provider, refresh_expires_at FROM connections WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            expiring.push(crate::events::Event::ConnectionExpiringSoon {
                connection: parse(id.clone())?,
                provider: parse(provider)?,
                refresh_expires_at: from_ms(ends)?,
            });
        }
        super::events::write(&mut tx, self.backend, &expiring, now).await?;
        tx.commit().await?;
        Ok(queued.len() as u64)
    }

    pub(super) async fn claim_outbox_impl(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let now = to_ms(now);
        let until = to_ms(lease.until);
        let mut tx = self.write().await?;
        let free = "sent_at IS NULL AND failed_at IS NULL \
                    AND (lease_expires_at IS NULL OR lease_expires_at < $3)";
        let due = format!(
            "SELECT id FROM outbox WHERE {free} AND next_attempt_at <= $3 \
             ORDER BY next_attempt_at LIMIT $4{}",
            self.backend.skip_locked()
        );
        let mut rows = sqlx::query(&format!(
            "UPDATE outbox SET lease_owner = $1, lease_expires_at = $2 \
             WHERE {} RETURNING {OUTBOX_COLUMNS}",
            self.backend.found_by("id", &due)
        ))
        .bind(&lease.owner)
        .bind(until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        // An owner whose first notice is due gets the ones queued after it in the same e-mail.
        let owners: Vec<String> = rows
            .iter()
            .filter(|r| {
                r.try_get::<String, _>("kind").ok().as_deref() == Some("credentials_expired")
            })
            .filter_map(|r| r.try_get("recipient").ok())
            .collect();
        for owner in owners {
            let more = sqlx::query(&format!(
                "UPDATE outbox SET lease_owner = $1, lease_expires_at = $2 \
                 WHERE kind = 'credentials_expired' AND recipient = $4 AND {free} \
                 RETURNING {OUTBOX_COLUMNS}"
            ))
            .bind(&lease.owner)
            .bind(until)
            .bind(now)
            .bind(&owner)
            .fetch_all(&mut *tx)
            .await?;
            rows.extend(more);
        }
        tx.commit().await?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.try_get("id")?,
                    kind: parse(r.try_get("kind")?)?,
                    recipient: parse(r.try_get("recipient")?)?,
                    connection: opt_parse(r, "connection_id")?,
                    incident: r.try_get("incident_id")?,
                    payload: r.try_get("payload")?,
                    attempts: small(r.try_get("attempts")?),
                    created_at: from_ms(r.try_get("created_at")?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        items.sort_by_key(|i| i.id);
        items.dedup_by_key(|i| i.id);
        Ok(items)
    }

    pub(super) async fn next_outbox_due_impl(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        opt_time(at)
    }

    /// Applies one update to each of `ids`, and ends their leases.
    async fn outbox_update(
        &self,
        ids: &[i64],
        set: &str,
        a: i64,
        b: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for id in ids {
            sqlx::query(&format!(
                "UPDATE outbox SET {set}, lease_owner = NULL, lease_expires_at = NULL WHERE id = $3"
            ))
            .bind(a)
            .bind(b)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn outbox_sent_impl(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.outbox_update(ids, "sent_at = $1, last_error = $2", to_ms(now), note)
            .await
    }

    pub(super) async fn outbox_retry_impl(
        &self,
        ids: &[i64],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_update(
            ids,
            "attempts = attempts + 1, next_attempt_at = $1, last_error = $2",
            to_ms(next_attempt_at),
            Some(error),
        )
        .await
    }

    pub(super) async fn outbox_failed_impl(
        &self,
        ids: &[i64],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.outbox_update(
            ids,
            "attempts = attempts + 1, failed_at = $1, last_error = $2",
            to_ms(now),
            Some(error),
        )
        .await
    }

    pub(super) async fn incident_impl(&self, id: i64) -> Result<Incident, StoreError> {
        let r = sqlx::query(
            "SELECT id, connection_id, category, detail, opened_at, closed_at FROM incidents WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("incident {id} is missing")))?;
        Ok(Incident {
            id: r.try_get("id")?,
            connection: parse(r.try_get("connection_id")?)?,
            category: parse(r.try_get("category")?)?,
            detail: r.try_get("detail")?,
            opened_at: from_ms(r.try_get("opened_at")?)?,
            closed_at: opt_time(r.try_get("closed_at")?)?,
        })
    }

    pub(super) async fn add_reauth_link_impl(
        &self,
        token_hash: &[u8],
        connection: &ConnectionId,
        incident: Option<i64>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO reauth_links (token_hash, connection_id, incident_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(connection.as_str())
        .bind(incident)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
