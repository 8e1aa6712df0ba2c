//! The platform's reads and writes of connections: hand-outs, filtered pages, updates.

use super::*;

/// A unique-index violation on `external_id` in words; any other error as it was.
pub(super) fn external_id_taken(e: sqlx::Error, external_id: Option<&str>) -> StoreError {
    match (&e, external_id) {
        (sqlx::Error::Database(d), Some(ext)) if d.is_unique_violation() => {
            StoreError::ExternalIdTaken(ext.to_owned())
        }
        _ => StoreError::Database(e),
    }
}

impl SqlStore {
    /// One hand-out read, grouped with the others asked at the same moment (see `handouts`).
    pub(super) async fn handout_impl(&self, id: &ConnectionId) -> Result<Handout, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.handouts.send((id.clone(), answer)).await.is_err() {
            return handouts::read_one(&self.pool, &self.keyring, id).await;
        }
        match answered.await {
            Ok(result) => result,
            Err(_) => handouts::read_one(&self.pool, &self.keyring, id).await,
        }
    }

    pub(super) async fn list_connections_impl(
        &self,
        filter: &ConnectionFilter,
        after: Option<&ConnectionId>,
        limit: u32,
    ) -> Result<Vec<Connection>, StoreError> {
        let mut sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id > $1");
        let mut binds: Vec<&str> = vec![after.map_or("", ConnectionId::as_str)];
        let fields = [
            ("status", filter.status.map(|s| s.as_str())),
            ("provider", filter.provider.as_ref().map(|p| p.as_str())),
            ("owner_email", filter.owner.as_ref().map(|o| o.as_str())),
            ("external_id", filter.external_id.as_deref()),
        ];
        for (column, value) in fields {
            if let Some(value) = value {
                binds.push(value);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", binds.len() + 1));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(connection_from_row).collect()
    }

    pub(super) async fn update_connection_impl(
        &self,
        id: &ConnectionId,
        update: &ConnectionUpdate,
        now: DateTime<Utc>,
    ) -> Result<Connection, StoreError> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE connections SET name = COALESCE($1, name), owner_email = COALESCE($2, owner_email), \
               metadata = CASE WHEN $3 = 1 THEN $4 ELSE metadata END, updated_at = $5 \
             WHERE id = $6",
        )
        .bind(update.name.as_deref())
        .bind(update.owner.as_ref().map(EmailAddress::as_str))
        .bind(i64::from(update.metadata.is_some()))
        .bind(update.metadata.clone().flatten())
        .bind(to_ms(now))
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ConnectionNotFound(id.clone()));
        }
        tx.commit().await?;
        self.connection(id).await
    }
}
