//! The platform's reads and writes of pipelines: filtered pages and batches of positions.

use super::*;

impl SqlStore {
    pub(super) async fn list_pipelines_impl(
        &self,
        filter: &PipelineFilter,
        after: Option<&PipelineId>,
        limit: u32,
    ) -> Result<Vec<Pipeline>, StoreError> {
        let mut sql = format!("SELECT {PIPELINE_COLUMNS} FROM pipelines WHERE id > $1");
        let mut binds: Vec<&str> = vec![after.map_or("", PipelineId::as_str)];
        if let Some(state) = filter.state {
            binds.push(state.as_str());
            sql.push_str(&format!(" AND state = ${}", binds.len()));
        }
        if let Some(ext) = filter.external_id.as_deref() {
            binds.push(ext);
            sql.push_str(&format!(" AND external_id = ${}", binds.len()));
        }
        if let Some(c) = &filter.connection {
            binds.push(c.as_str());
            sql.push_str(&format!(
                " AND id IN (SELECT pipeline_id FROM pipeline_connections WHERE connection_id = ${})",
                binds.len()
            ));
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", binds.len() + 1));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: PipelineId = parse(r.try_get("id")?)?;
            out.push(pipeline_from_row(r, self.pipeline_connections(&id).await?)?);
        }
        Ok(out)
    }

    pub(super) async fn set_positions_impl(
        &self,
        updates: &[PositionUpdate],
        now: DateTime<Utc>,
    ) -> Result<Vec<PipelineId>, StoreError> {
        let now = to_ms(now);
        let mut missing = Vec::new();
        let mut tx = self.write().await?;
        for u in updates {
            let updated = sqlx::query(
                "UPDATE pipelines SET position = $1, position_updated_at = $2, updated_at = $2 WHERE id = $3",
            )
            .bind(u.position.as_str())
            .bind(now)
            .bind(u.pipeline.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                missing.push(u.pipeline.clone());
            }
        }
        tx.commit().await?;
        Ok(missing)
    }
}
