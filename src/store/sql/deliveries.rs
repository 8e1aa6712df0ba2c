//! Webhook deliveries: fanned out from the event log per endpoint, claimed under leases like
//! the mailer's notices (delivered once however many replicas run), in order per order key.

use super::events::{EVENT_COLUMNS, ORDER_KEY, first_since, stored_from_row, types_clause};
use super::*;
use crate::store::deliveries::{Deliveries, Delivery, EndpointStatus};

/// Deliveries neither delivered nor given up.
const OPEN: &str = "delivered_at IS NULL AND failed_at IS NULL";

#[async_trait]
impl Deliveries for SqlStore {
    async fn fan_out(
        &self,
        endpoint: &str,
        types: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let fanned: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT fanned_seq FROM webhook_endpoints WHERE endpoint = $1{}",
            self.backend.for_update()
        ))
        .bind(endpoint)
        .fetch_optional(&mut *tx)
        .await?;
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let Some(fanned) = fanned else {
            // A new endpoint gets what happens from now on; `replay` sends it the past.
            sqlx::query(
                "INSERT INTO webhook_endpoints (endpoint, fanned_seq) VALUES ($1, $2) \
                 ON CONFLICT (endpoint) DO NOTHING",
            )
            .bind(endpoint)
            .bind(last)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(0);
        };
        if last <= fanned {
            return Ok(0);
        }
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint, event_seq, order_key, next_attempt_at, created_at) \
             SELECT $1, e.seq, {ORDER_KEY}, $2, $2 FROM events e \
             WHERE e.seq > $3 AND e.seq <= $4{} \
             ON CONFLICT (endpoint, event_seq) DO NOTHING",
            types_clause("e", types)
        );
        let insert = sqlx::query(&sql)
            .bind(endpoint)
            .bind(to_ms(now))
            .bind(fanned)
            .bind(last);
        let queued = insert.execute(&mut *tx).await?.rows_affected();
        sqlx::query("UPDATE webhook_endpoints SET fanned_seq = $1 WHERE endpoint = $2")
            .bind(last)
            .bind(endpoint)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(queued)
    }

    async fn claim_deliveries(
        &self,
        endpoint: &str,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        // The oldest open delivery of each key, if it is due and nobody holds it: a key whose
        // oldest is leased or waiting for its retry waits with it.
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT d.id FROM webhook_deliveries d WHERE d.endpoint = $1 AND d.{OPEN} \
               AND d.next_attempt_at <= $2 \
               AND (d.lease_expires_at IS NULL OR d.lease_expires_at < $2) \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.endpoint = d.endpoint \
                 AND o.order_key = d.order_key AND o.{OPEN} AND o.event_seq < d.event_seq) \
             ORDER BY d.event_seq LIMIT $3{}",
            self.backend.skip_locked()
        ))
        .bind(endpoint)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2, \
                   attempts = attempts + 1 WHERE id = $3 \
                 RETURNING id, endpoint, attempts, created_at, event_seq",
            )
            .bind(&lease.owner)
            .bind(to_ms(lease.until))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let seq: i64 = row.try_get("event_seq")?;
            let event = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq = $1"
            ))
            .bind(seq)
            .fetch_one(&mut *tx)
            .await?;
            claimed.push(Delivery {
                id: row.try_get("id")?,
                endpoint: row.try_get("endpoint")?,
                attempts: small(row.try_get("attempts")?),
                created_at: from_ms(row.try_get("created_at")?)?,
                event: stored_from_row(&event)?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn delivered(&self, done: &[Delivery], now: DateTime<Utc>) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        let params: Vec<String> = (0..done.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE webhook_deliveries SET delivered_at = $1, lease_owner = NULL, \
               lease_expires_at = NULL, last_error = NULL WHERE id IN ({})",
            params.join(", ")
        );
        let mut update = sqlx::query(&sql).bind(to_ms(now));
        for d in done {
            update = update.bind(d.id);
        }
        update.execute(&mut *tx).await?;
        let mut endpoints: Vec<&str> = done.iter().map(|d| d.endpoint.as_str()).collect();
        endpoints.dedup();
        for endpoint in endpoints {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = NULL \
                 WHERE endpoint = $1 AND failing_since IS NOT NULL",
            )
            .bind(endpoint)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn retry_delivery(
        &self,
        d: &Delivery,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $1, last_error = $2, \
               lease_owner = NULL, lease_expires_at = NULL WHERE id = $3",
        )
        .bind(to_ms(at))
        .bind(error)
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        d: &Delivery,
        error: &str,
        now: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<(), StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET failed_at = $1, last_error = $2, lease_owner = NULL, \
               lease_expires_at = NULL WHERE id = $3",
        )
        .bind(now)
        .bind(error)
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
        let spell: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) \
             WHERE endpoint = $2 RETURNING failing_since",
        )
        .bind(now)
        .bind(&d.endpoint)
        .fetch_optional(&mut *tx)
        .await?;
        if let (Some(operator), Some(Some(since))) = (operator, spell) {
            let payload = serde_json::json!({
                "provider": d.endpoint, "kind": "webhook_failing",
                "detail": format!("{} gave up on event {} after {} attempts: {error}",
                    d.endpoint, crate::events::id_of(d.event.seq), d.attempts),
            })
            .to_string();
            // One e-mail per endpoint and failing spell, however many events it gives up.
            Self::enqueue(
                &mut tx,
                NoticeKind::OperatorAlert,
                operator.as_str(),
                &format!("webhook:{}:{since}", d.endpoint),
                None,
                None,
                &payload,
                now,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn next_delivery_due(&self, endpoint: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT MIN(CASE WHEN lease_expires_at IS NOT NULL AND lease_expires_at > next_attempt_at \
               THEN lease_expires_at ELSE next_attempt_at END) \
             FROM webhook_deliveries WHERE endpoint = $1 AND {OPEN}"
        ))
        .bind(endpoint)
        .fetch_one(&self.pool)
        .await?;
        opt_time(at)
    }

    async fn endpoint_status(&self) -> Result<Vec<EndpointStatus>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT w.endpoint, w.failing_since, \
               (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint = w.endpoint AND d.{OPEN}) AS pending, \
               (SELECT MIN(d.created_at) FROM webhook_deliveries d WHERE d.endpoint = w.endpoint AND d.{OPEN}) AS oldest, \
               (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint = w.endpoint AND d.delivered_at IS NOT NULL) AS delivered, \
               (SELECT COUNT(*) FROM webhook_deliveries d WHERE d.endpoint = w.endpoint AND d.failed_at IS NOT NULL) AS failed, \
               (SELECT d.last_error FROM webhook_deliveries d WHERE d.endpoint = w.endpoint \
                  AND d.last_error IS NOT NULL ORDER BY d.id DESC LIMIT 1) AS last_error \
             FROM webhook_endpoints w ORDER BY w.endpoint"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EndpointStatus {
                    endpoint: r.try_get("endpoint")?,
                    pending: r.try_get::<i64, _>("pending")?.max(0) as u64,
                    oldest_pending_at: opt_time(r.try_get("oldest")?)?,
                    delivered: r.try_get::<i64, _>("delivered")?.max(0) as u64,
                    failed: r.try_get::<i64, _>("failed")?.max(0) as u64,
                    last_error: r.try_get("last_error")?,
                    failing_since: opt_time(r.try_get("failing_since")?)?,
                })
            })
            .collect()
    }

    async fn retry_endpoint(&self, endpoint: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE webhook_deliveries SET failed_at = NULL, next_attempt_at = $1, created_at = $1 \
             WHERE endpoint = $2 AND delivered_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(endpoint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn replay(
        &self,
        endpoint: &str,
        types: &[String],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = to_ms(now);
        let mut tx = self.write().await?;
        // Delivered ones go again; new rows for events it never had.
        let filter = types_clause("e", types);
        let first = first_since("$3");
        let sql = format!(
            "UPDATE webhook_deliveries SET delivered_at = NULL, failed_at = NULL, attempts = 0, \
               next_attempt_at = $1, created_at = $1 \
             WHERE endpoint = $2 AND event_seq IN (SELECT e.seq FROM events e WHERE e.seq >= {first}{filter})"
        );
        let again = sqlx::query(&sql)
            .bind(now)
            .bind(endpoint)
            .bind(to_ms(since));
        let mut n = again.execute(&mut *tx).await?.rows_affected();
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint, event_seq, order_key, next_attempt_at, created_at) \
             SELECT $2, e.seq, {ORDER_KEY}, $1, $1 FROM events e WHERE e.seq >= {first}{filter} \
             ON CONFLICT (endpoint, event_seq) DO NOTHING"
        );
        let fresh = sqlx::query(&sql)
            .bind(now)
            .bind(endpoint)
            .bind(to_ms(since));
        n += fresh.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
