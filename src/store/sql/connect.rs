//! Connect links and the authorizations started from them.

use super::*;
use crate::store::connect::{ConnectLink, ConnectLinks, ConnectSession, NewConnectLink};

fn session_context(state_hash: &[u8]) -> String {
    let hex: String = state_hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("connect_session/{hex}/verifier")
}

#[async_trait]
impl ConnectLinks for SqlStore {
    async fn add_connect_link(
        &self,
        token_hash: &[u8],
        invite: &NewConnectLink,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO connect_links (token_hash, provider, name, owner_email, external_id, \
               account, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token_hash)
        .bind(invite.provider.as_str())
        .bind(&invite.name)
        .bind(invite.owner.as_str())
        .bind(&invite.external_id)
        .bind(&invite.account)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn queue_invitation(
        &self,
        invite: &NewConnectLink,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(invite)
            .map_err(|e| StoreError::Corrupt(format!("an invitation: {e}")))?;
        let mut tx = self.write().await?;
        Self::enqueue(
            &mut tx,
            NoticeKind::ConnectInvitation,
            invite.owner.as_str(),
            &format!("invitation:{}", crate::links::random_token()),
            None,
            None,
            &payload,
            to_ms(now),
            to_ms(now),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connect_link(&self, token_hash: &[u8]) -> Result<Option<ConnectLink>, StoreError> {
        let row = sqlx::query(
            "SELECT provider, name, owner_email, external_id, account, expires_at, used_at \
             FROM connect_links WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ConnectLink {
                invite: NewConnectLink {
                    provider: parse(r.try_get("provider")?)?,
                    name: r.try_get("name")?,
                    owner: parse(r.try_get("owner_email")?)?,
                    external_id: r.try_get("external_id")?,
                    account: r.try_get("account")?,
                },
                expires_at: from_ms(r.try_get("expires_at")?)?,
                used_at: opt_time(r.try_get("used_at")?)?,
            })
        })
        .transpose()
    }

    async fn start_connect_session(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sealed = self.keyring.seal(verifier, &session_context(state_hash))?;
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO connect_sessions (state_hash, link_hash, key_id, verifier, created_at, expires_at) \
             SELECT $1, token_hash, $2, $3, $4, $5 FROM connect_links \
             WHERE token_hash = $6 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(state_hash)
        .bind(sealed.key_id.as_str())
        .bind(&sealed.blob)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .bind(link_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn take_connect_session(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<ConnectSession>, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE connect_sessions SET used_at = $1 \
             WHERE state_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING link_hash, key_id, verifier",
        )
        .bind(to_ms(now))
        .bind(state_hash)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| {
            let key_id: String = r.try_get("key_id")?;
            let blob: Vec<u8> = r.try_get("verifier")?;
            Ok(ConnectSession {
                link_hash: r.try_get("link_hash")?,
                verifier: self
                    .keyring
                    .open(&key_id, &blob, &session_context(state_hash))?,
            })
        })
        .transpose()
    }

    async fn use_connect_link(
        &self,
        link_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let used = sqlx::query(
            "UPDATE connect_links SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(to_ms(now))
        .bind(link_hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(used == 1)
    }

    async fn connect_link_created(
        &self,
        link_hash: &[u8],
        connection: &ConnectionId,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE connect_links SET connection_id = $1 WHERE token_hash = $2")
            .bind(connection.as_str())
            .bind(link_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
