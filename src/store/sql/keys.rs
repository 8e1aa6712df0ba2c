//! Which keys sealed the stored tokens: listed in `sealing_keys`, so that opening the store
//! reads a few rows rather than every connection.

use super::*;

impl SqlStore {
    pub(super) async fn key_ids_impl(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM sealing_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Reads every connection: only when the listed keys are in doubt.
    pub(super) async fn keys_in_use_impl(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT key_id FROM connections ORDER BY key_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub(super) async fn list_keys_impl(
        &self,
        current: &str,
        forget: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO sealing_keys (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
            .bind(current)
            .execute(&mut *tx)
            .await?;
        for id in forget {
            // Only while no token needs it: another instance may have sealed one since it was
            // found unused (it would not have the key, but its tokens must not go unlisted).
            sqlx::query(
                "DELETE FROM sealing_keys WHERE id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM connections WHERE key_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
