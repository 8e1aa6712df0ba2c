//! Provider alerts: one open per provider and kind, with the operator's notice queued in the
//! same transaction, and the retry schedule of a held provider.

use super::*;
use crate::events::Event;

impl SqlStore {
    pub(super) async fn open_provider_alert_impl(
        &self,
        provider: &ProviderId,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let opened = Self::open_alert_in(
            &mut tx,
            provider,
            kind,
            detail,
            now,
            next_attempt_at,
            operator,
        )
        .await?;
        let events: Vec<Event> = opened.iter().cloned().collect();
        super::events::write(&mut tx, self.backend, &events, to_ms(now)).await?;
        tx.commit().await?;
        Ok(opened.is_some())
    }

    /// Opens an alert in a transaction of the caller's, with the operator's notice. Answers the
    /// event to write (last, see `events::write`) when it opened one.
    pub(super) async fn open_alert_in(
        tx: &mut sqlx::AnyConnection,
        provider: &ProviderId,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<Option<Event>, StoreError> {
        let alert: Option<i64> = sqlx::query_scalar(
            "INSERT INTO provider_alerts (provider, kind, detail, opened_at, next_attempt_at) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
               (SELECT 1 FROM provider_alerts WHERE provider = $1 AND kind = $2 AND closed_at IS NULL) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(provider.as_str())
        .bind(kind)
        .bind(detail)
        .bind(to_ms(now))
        .bind(to_ms(next_attempt_at))
        .fetch_optional(&mut *tx)
        .await?;
        if let (Some(alert), Some(operator)) = (alert, operator) {
            let payload =
                serde_json::json!({ "provider": provider, "kind": kind, "detail": detail })
                    .to_string();
            Self::enqueue(
                tx,
                NoticeKind::OperatorAlert,
                operator.as_str(),
                &format!("alert:{alert}"),
                None,
                None,
                &payload,
                to_ms(now),
                to_ms(now),
            )
            .await?;
        }
        Ok(alert.map(|_| Event::ProviderAlert {
            provider: provider.clone(),
            kind: kind.to_owned(),
            detail: detail.to_owned(),
        }))
    }

    pub(super) async fn postpone_provider_alert_impl(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
        base: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<(), StoreError> {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE provider_alerts SET attempts = attempts + 1, \
               next_attempt_at = $1 + CASE WHEN attempts >= 20 OR $2 * (1 << CAST(attempts AS INTEGER)) > $3 \
                 THEN $3 ELSE $2 * (1 << CAST(attempts AS INTEGER)) END \
             WHERE provider = $4 AND kind = $5 AND closed_at IS NULL AND next_attempt_at <= $1",
        )
        .bind(to_ms(now))
        .bind(ms(base))
        .bind(ms(cap))
        .bind(provider.as_str())
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn close_provider_alert_impl(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let closed = sqlx::query(
            "UPDATE provider_alerts SET closed_at = $1 \
             WHERE provider = $2 AND kind = $3 AND closed_at IS NULL",
        )
        .bind(to_ms(now))
        .bind(provider.as_str())
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(closed.rows_affected() > 0)
    }

    pub(super) async fn open_provider_alerts_impl(&self) -> Result<Vec<ProviderAlert>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, kind, detail, opened_at, next_attempt_at, attempts \
             FROM provider_alerts WHERE closed_at IS NULL ORDER BY provider, kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderAlert {
                    provider: parse(r.try_get("provider")?)?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    opened_at: from_ms(r.try_get("opened_at")?)?,
                    next_attempt_at: from_ms(r.try_get("next_attempt_at")?)?,
                    attempts: small(r.try_get("attempts")?),
                })
            })
            .collect()
    }
}
