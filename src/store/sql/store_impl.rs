//! The `Store` trait for `SqlStore`: connections and pipelines here, the rest delegated to the
//! files that own each part (checks, outbox, reauthorization, actions).

use super::checks::CHAIN;
use super::connections::external_id_taken;
use super::events;
use super::*;
use crate::events::Event;

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
        let expected = self
            .backend
            .migrator()
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        match found.unwrap_or(0) {
            f if f >= expected => Ok(()),
            found => Err(StoreError::SchemaBehind { found, expected }),
        }
    }

    fn writes_failing(&self) -> Option<WritesFailing> {
        self.writes.failing()
    }

    async fn probe_writes(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let written = async {
            let mut tx = self.write().await?;
            sqlx::query(
                "INSERT INTO write_probe (id, at) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        };
        let result = written.await;
        self.watched(result, |_| true)
    }

    async fn add_connection(
        &self,
        new: NewConnection,
        now: DateTime<Utc>,
    ) -> Result<ConnectionId, StoreError> {
        let mut ids = self.add_connections(vec![new], now).await?;
        ids.pop()
            .ok_or_else(|| StoreError::Corrupt("no connection was added".into()))
    }

    async fn add_connections(
        &self,
        batch: Vec<NewConnection>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let now = to_ms(now);
        let mut ids = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut tx = self.write().await?;
        for new in batch {
            let id = ConnectionId::generate();
            let sealed = self.seal_tokens(&id, &new.tokens, None)?;
            sqlx::query(
                "INSERT INTO connections (id, provider, name, owner_email, account, scopes, key_id, access_token, \
                 refresh_token, access_expires_at, refresh_expires_at, tokens_updated_at, status, status_since, \
                 next_check_at, created_at, updated_at, external_id, metadata, credential_kind, instance_url) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'healthy', $12, $12, $12, $12, $13, $14, $15, $16)",
            )
            .bind(id.as_str())
            .bind(new.provider.as_str())
            .bind(&new.name)
            .bind(new.owner.as_str())
            .bind(&new.account)
            .bind(new.tokens.scopes.join(" "))
            .bind(&sealed.key_id)
            .bind(&sealed.access)
            .bind(&sealed.refresh)
            .bind(new.tokens.expires_at.map(to_ms))
            .bind(new.tokens.refresh_expires_at.map(to_ms))
            .bind(now)
            .bind(&new.external_id)
            .bind(&new.metadata)
            .bind(new.credential_kind)
            .bind(&new.tokens.instance_url)
            .execute(&mut *tx)
            .await
            .map_err(|e| external_id_taken(e, new.external_id.as_deref()))?;
            events.push(Event::ConnectionCreated {
                connection: id.clone(),
                provider: new.provider,
                name: new.name,
                owner: new.owner,
            });
            ids.push(id);
        }
        events::write(&mut tx, self.backend, &events, now).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn connection(&self, id: &ConnectionId) -> Result<Connection, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        connection_from_row(&row)
    }

    async fn connections(&self) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    async fn connection_ids(
        &self,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM connections WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.map_or("", ConnectionId::as_str))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        ids.into_iter().map(parse).collect()
    }

    async fn tokens(&self, id: &ConnectionId) -> Result<StoredTokens, StoreError> {
        let row = sqlx::query("SELECT key_id, access_token, refresh_token, token_generation FROM connections WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::ConnectionNotFound(id.clone()))?;
        self.tokens_from_row(id, &row)
    }

    async fn events_after(
        &self,
        after: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<crate::events::Stored>, StoreError> {
        self.events_after_impl(after, types, limit).await
    }

    fn committed(&self) -> Arc<tokio::sync::Notify> {
        self.committed.clone()
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.prune_events_impl(before).await
    }

    async fn prune_history(&self, before: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.prune_history_impl(before, limit).await
    }

    async fn close(&self) {
        self.workers.close().await;
        if let ChecksWriter::Postgres { claims, .. } = &self.checks_writer {
            claims.close().await;
        }
        self.pool.close().await;
        // Closing the last connection folds SQLite's log into the database file and removes
        // it. Under load, one run in several left the log behind: presumably a connection of
        // sqlx's closed a moment after its pool's close returned, becoming the last, with the
        // process ending first. The log is folded in here as well, whoever closes last.
        if let Some(file) = &self.sqlite_file {
            let file = file.clone();
            let folded = tokio::task::spawn_blocking(move || super::native::fold_log(&file)).await;
            if let Ok(Err(e)) = folded {
                tracing::warn!(error = %e, "folding the database's log into it at shutdown");
            }
        }
    }

    async fn handout(&self, id: &ConnectionId) -> Result<Handout, StoreError> {
        self.handout_impl(id).await
    }

    async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        self.list_connections_impl(filter, after, limit).await
    }

    async fn update_connection(
        &self,
        id: &ConnectionId,
        update: &ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection, StoreError> {
        self.update_connection_impl(id, update, now).await
    }

    async fn list_pipelines(
        &self,
        filter: &PipelineFilter,
        after: Option<&PipelineId>,
        limit: u32,
    ) -> Result<Vec<Pipeline>, StoreError> {
        self.list_pipelines_impl(filter, after, limit).await
    }

    async fn set_positions(
        &self,
        updates: &[PositionUpdate],
        now: DateTime<Utc>,
    ) -> Result<Vec<PipelineId>, StoreError> {
        self.set_positions_impl(updates, now).await
    }

    async fn remove_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let users: Vec<String> = sqlx::query_scalar("SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $1 ORDER BY pipeline_id")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
        if !users.is_empty() {
            return Err(StoreError::ConnectionInUse {
                id: id.clone(),
                pipelines: users.join(", "),
            });
        }
        // Its history goes with it, link by link (there is no index by connection to cascade on).
        sqlx::query(&format!(
            "WITH RECURSIVE {CHAIN} DELETE FROM checks WHERE id IN (SELECT id FROM chain)"
        ))
        .bind(id.as_str())
        .bind(i64::MAX)
        .execute(&mut *tx)
        .await?;
        let gone: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
            "DELETE FROM connections WHERE id = $1 RETURNING provider, external_id, metadata",
        )
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((provider, external_id, metadata)) = gone else {
            return Err(StoreError::ConnectionNotFound(id.clone()));
        };
        let deleted = [Event::ConnectionDeleted {
            connection: id.clone(),
            provider: parse(provider)?,
        }];
        let ids = (external_id, metadata);
        events::write_with(
            &mut tx,
            self.backend,
            &deleted,
            to_ms(Utc::now()),
            Some(&ids),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_pipeline(
        &self,
        new: NewPipeline,
        now: DateTime<Utc>,
    ) -> Result<PipelineId, StoreError> {
        let id = PipelineId::generate();
        let now = to_ms(now);
        let mut connections = new.connections;
        connections.sort();
        connections.dedup();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO pipelines (id, name, state, position, position_updated_at, created_at, updated_at, external_id) \
             VALUES ($1, $2, 'running', $3, $4, $5, $5, $6)",
        )
        .bind(id.as_str())
        .bind(&new.name)
        .bind(new.position.as_ref().map(Position::as_str))
        .bind(new.position.as_ref().map(|_| now))
        .bind(now)
        .bind(&new.external_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| external_id_taken(e, new.external_id.as_deref()))?;
        for c in &connections {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM connections WHERE id = $1")
                .bind(c.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::ConnectionNotFound(c.clone()));
            }
            sqlx::query(
                "INSERT INTO pipeline_connections (pipeline_id, connection_id) VALUES ($1, $2)",
            )
            .bind(id.as_str())
            .bind(c.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn pipeline(&self, id: &PipelineId) -> Result<Pipeline, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::PipelineNotFound(id.clone()))?;
        pipeline_from_row(&row, self.pipeline_connections(id).await?)
    }

    async fn pipelines(&self) -> Result<Vec<Pipeline>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PIPELINE_COLUMNS} FROM pipelines ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let links = sqlx::query("SELECT pipeline_id, connection_id FROM pipeline_connections ORDER BY pipeline_id, connection_id")
            .fetch_all(&self.pool)
            .await?;
        let mut by_pipeline: std::collections::HashMap<String, Vec<ConnectionId>> =
            std::collections::HashMap::new();
        for link in &links {
            by_pipeline
                .entry(link.try_get("pipeline_id")?)
                .or_default()
                .push(parse(link.try_get("connection_id")?)?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                pipeline_from_row(r, by_pipeline.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn set_position(
        &self,
        id: &PipelineId,
        position: &Position,
        now: DateTime<Utc>,
    ) -> Result<Pipeline, StoreError> {
        let updated = sqlx::query("UPDATE pipelines SET position = $1, position_updated_at = $2, updated_at = $2 WHERE id = $3")
            .bind(position.as_str())
            .bind(to_ms(now))
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::PipelineNotFound(id.clone()));
        }
        self.pipeline(id).await
    }

    async fn remove_pipeline(&self, id: &PipelineId) -> Result<(), StoreError> {
        let removed = sqlx::query("DELETE FROM pipelines WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::PipelineNotFound(id.clone()));
        }
        Ok(())
    }

    async fn pause_pipeline(
        &self,
        id: &PipelineId,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.pause_pipeline_impl(id, reason, now).await
    }

    async fn resume_pipeline(&self, id: &PipelineId, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.resume_pipeline_impl(id, now).await
    }

    async fn pipeline_events(
        &self,
        id: &PipelineId,
        limit: u32,
    ) -> Result<Vec<PipelineEvent>, StoreError> {
        self.pipeline_events_impl(id, limit).await
    }

    async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, StoreError> {
        let rows = sqlx::query(super::METRICS).fetch_all(&self.pool).await?;
        let connections = rows
            .iter()
            .map(|r| {
                Ok(ConnectionCount {
                    provider: r.try_get("provider")?,
                    status: r.try_get("status")?,
                    reason: r.try_get("reason")?,
                    count: r.try_get("n")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let (pending, failed): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN sent_at IS NULL AND failed_at IS NULL THEN 1 END), \
                    COUNT(CASE WHEN failed_at IS NOT NULL THEN 1 END) FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(MetricsSnapshot {
            connections,
            outbox_pending: pending,
            outbox_failed: failed,
        })
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(super::COUNTS).fetch_one(&self.pool).await?;
        let n = |col: &str| -> Result<u64, StoreError> {
            Ok(row.try_get::<i64, _>(col)?.max(0) as u64)
        };
        let (connections, degraded, broken) = (n("connections")?, n("degraded")?, n("broken")?);
        Ok(Counts {
            connections,
            healthy: connections.saturating_sub(degraded + broken),
            degraded,
            broken,
            set_aside: n("set_aside")?,
            pipelines: n("pipelines")?,
            paused: n("paused")?,
        })
    }

    async fn claim_due(&self, q: DueQuery<'_>, lease: &Lease) -> Result<Vec<Claimed>, StoreError> {
        let result = self.claim_due_impl(q, lease).await;
        self.watched(result, |c| !c.is_empty())
    }

    async fn retry_set_aside(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.retry_set_aside_impl(now).await
    }

    async fn claim(
        &self,
        id: &ConnectionId,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<ClaimOutcome, StoreError> {
        let result = self.claim_impl(id, lease, now).await;
        self.watched(result, |c| matches!(c, ClaimOutcome::Claimed(_)))
    }

    async fn release(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let result = self.release_impl(claimed).await;
        self.watched(result, |_| true)
    }

    async fn rescue_rotation(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError> {
        let result = self.rescue_rotation_impl(claimed, rotation).await;
        self.watched(result, |_| true)
    }

    async fn save_rotation(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
    ) -> Result<i64, StoreError> {
        let result = self.save_rotation_impl(claimed, rotation).await;
        self.watched(result, |_| true)
    }

    async fn finish_refreshed(
        &self,
        claimed: &Claimed,
        rotation: Rotation<'_>,
        result: &CheckResult,
    ) -> Result<bool, StoreError> {
        let result = self.finish_refreshed_impl(claimed, rotation, result).await;
        self.watched(result, |stored| *stored)
    }

    async fn finish_check(
        &self,
        claimed: &Claimed,
        result: &CheckResult,
    ) -> Result<Applied, StoreError> {
        let result = self.finish_check_impl(claimed, result).await;
        self.watched(result, |_| true)
    }

    async fn spread_overdue(
        &self,
        now: DateTime<Utc>,
        window: std::time::Duration,
        keep: u32,
    ) -> Result<u64, StoreError> {
        self.spread_overdue_impl(now, window, keep).await
    }

    async fn recent_checks(
        &self,
        id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<CheckRecord>, StoreError> {
        self.recent_checks_impl(id, limit).await
    }

    async fn open_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        detail: &str,
        now: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        let result = self
            .open_provider_alert_impl(provider, kind, detail, now, next_attempt_at, operator)
            .await;
        self.watched(result, |_| true)
    }

    async fn queue_reminders(
        &self,
        now: DateTime<Utc>,
        reminders: &[std::time::Duration],
    ) -> Result<u64, StoreError> {
        let result = self.queue_reminders_impl(now, reminders).await;
        self.watched(result, |n| *n > 0)
    }

    async fn queue_expiring(
        &self,
        now: DateTime<Utc>,
        horizon: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let result = self.queue_expiring_impl(now, horizon).await;
        self.watched(result, |n| *n > 0)
    }

    async fn claim_outbox(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let result = self.claim_outbox_impl(lease, now, limit).await;
        self.watched(result, |items| !items.is_empty())
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.next_outbox_due_impl().await
    }

    async fn outbox_sent(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let result = self.outbox_sent_impl(ids, now, note).await;
        self.watched(result, |_| true)
    }

    async fn outbox_retry(
        &self,
        ids: &[i64],
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.outbox_retry_impl(ids, error, next_attempt_at).await;
        self.watched(result, |_| true)
    }

    async fn outbox_failed(
        &self,
        ids: &[i64],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.outbox_failed_impl(ids, error, now).await;
        self.watched(result, |_| true)
    }

    async fn open_incident(&self, connection: &ConnectionId) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE connection_id = $1 AND closed_at IS NULL",
        )
        .bind(connection.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn owner_told(&self, incident: i64) -> Result<bool, StoreError> {
        // A notice marked sent with a note was skipped, not delivered.
        let told: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE incident_id = $1 AND kind IN ($2, $3) \
             AND sent_at IS NOT NULL AND last_error IS NULL",
        )
        .bind(incident)
        .bind(NoticeKind::CredentialsExpired.as_str())
        .bind(NoticeKind::Reminder.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(told > 0)
    }

    async fn incident(&self, id: i64) -> Result<Incident, StoreError> {
        self.incident_impl(id).await
    }

    async fn add_reauth_link(
        &self,
        token_hash: &[u8],
        connection: &ConnectionId,
        incident: Option<i64>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_reauth_link_impl(token_hash, connection, incident, now, expires_at)
            .await
    }

    async fn reauth_link(&self, token_hash: &[u8]) -> Result<Option<ReauthLink>, StoreError> {
        self.reauth_link_impl(token_hash).await
    }

    async fn start_oauth_session(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.start_oauth_session_impl(link_hash, state_hash, verifier, now, expires_at)
            .await
    }

    async fn take_oauth_session(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthSession>, StoreError> {
        self.take_oauth_session_impl(state_hash, now).await
    }

    async fn reauthorize(
        &self,
        connection: &ConnectionId,
        link_hash: &[u8],
        tokens: &TokenSet,
        now: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
    ) -> Result<Reauthorized, StoreError> {
        self.reauthorize_impl(connection, link_hash, tokens, now, next_check_at)
            .await
    }

    async fn pipelines_of(&self, connection: &ConnectionId) -> Result<Vec<Pipeline>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT pipeline_id FROM pipeline_connections WHERE connection_id = $1 ORDER BY pipeline_id",
        )
        .bind(connection.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.pipeline(&parse(id)?).await?);
        }
        Ok(out)
    }

    async fn postpone_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
        base: std::time::Duration,
        cap: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.postpone_provider_alert_impl(provider, kind, now, base, cap)
            .await
    }

    async fn close_provider_alert(
        &self,
        provider: &ProviderId,
        kind: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.close_provider_alert_impl(provider, kind, now).await
    }

    async fn open_provider_alerts(&self) -> Result<Vec<ProviderAlert>, StoreError> {
        self.open_provider_alerts_impl().await
    }

    async fn key_ids(&self) -> Result<Vec<String>, StoreError> {
        self.key_ids_impl().await
    }

    async fn keys_in_use(&self) -> Result<Vec<String>, StoreError> {
        self.keys_in_use_impl().await
    }

    async fn list_keys(&self, current: &str, forget: &[String]) -> Result<(), StoreError> {
        self.list_keys_impl(current, forget).await
    }
}
