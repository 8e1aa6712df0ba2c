//! Reauthorization: links, the OAuth session between the page and the callback, and the one
//! transaction that heals a connection with the owner's new grant.

use super::*;
use crate::events::Event;

fn session_context(state_hash: &[u8]) -> String {
    let hex: String = state_hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("oauth_session/{hex}/verifier")
}

impl SqlStore {
    pub(super) async fn reauth_link_impl(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<ReauthLink>, StoreError> {
        let row = sqlx::query(
            "SELECT connection_id, incident_id, expires_at, used_at FROM reauth_links WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ReauthLink {
                connection: parse(r.try_get("connection_id")?)?,
                incident: r.try_get("incident_id")?,
                expires_at: from_ms(r.try_get("expires_at")?)?,
                used_at: opt_time(r.try_get("used_at")?)?,
            })
        })
        .transpose()
    }

    pub(super) async fn start_oauth_session_impl(
        &self,
        link_hash: &[u8],
        state_hash: &[u8],
        verifier: &SecretString,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sealed = self.keyring.seal(verifier, &session_context(state_hash))?;
        let inserted = sqlx::query(
            "INSERT INTO oauth_sessions (state_hash, link_hash, connection_id, key_id, verifier, \
               created_at, expires_at) \
             SELECT $1, token_hash, connection_id, $2, $3, $4, $5 FROM reauth_links \
             WHERE token_hash = $6 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(state_hash)
        .bind(sealed.key_id.as_str())
        .bind(&sealed.blob)
        .bind(to_ms(now))
        .bind(to_ms(expires_at))
        .bind(link_hash)
        .execute(&self.pool)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    pub(super) async fn take_oauth_session_impl(
        &self,
        state_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthSession>, StoreError> {
        let row = sqlx::query(
            "UPDATE oauth_sessions SET used_at = $1 \
             WHERE state_hash = $2 AND used_at IS NULL AND expires_at > $1 \
             RETURNING connection_id, link_hash, key_id, verifier",
        )
        .bind(to_ms(now))
        .bind(state_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let key_id: String = r.try_get("key_id")?;
            let blob: Vec<u8> = r.try_get("verifier")?;
            Ok(OAuthSession {
                connection: parse(r.try_get("connection_id")?)?,
                link_hash: r.try_get("link_hash")?,
                verifier: self
                    .keyring
                    .open(&key_id, &blob, &session_context(state_hash))?,
            })
        })
        .transpose()
    }

    pub(super) async fn reauthorize_impl(
        &self,
        id: &ConnectionId,
        link_hash: &[u8],
        t: &TokenSet,
        now: DateTime<Utc>,
        next_check_at: DateTime<Utc>,
    ) -> Result<Reauthorized, StoreError> {
        let sealed = self.seal_tokens(id, t, None)?;
        let now = to_ms(now);
        let mut tx = self.write().await?;
        let provider: Option<String> = sqlx::query_scalar(
            "UPDATE connections SET key_id = $1, access_token = $2, refresh_token = $3, \
               token_generation = token_generation + 1, access_expires_at = $4, \
               refresh_expires_at = $5, scopes = CASE WHEN $6 = '' THEN scopes ELSE $6 END, \
               tokens_updated_at = $7, status_since = CASE WHEN status = 'healthy' THEN status_since ELSE $7 END, \
               status = 'healthy', reason = NULL, consecutive_failures = 0, next_check_at = $8, \
               refresh_uncertain_since = NULL, refresh_interrupted_at = NULL, \
               refresh_sent_at = NULL, set_aside = NULL, updated_at = $7, \
               instance_url = COALESCE($10, instance_url) \
             WHERE id = $9 RETURNING provider",
        )
        .bind(&sealed.key_id)
        .bind(&sealed.access)
        .bind(&sealed.refresh)
        .bind(t.expires_at.map(to_ms))
        .bind(t.refresh_expires_at.map(to_ms))
        .bind(t.scopes.join(" "))
        .bind(now)
        .bind(to_ms(next_check_at))
        .bind(id.as_str())
        .bind(&t.instance_url)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(provider) = provider else {
            return Err(StoreError::ConnectionNotFound(id.clone()));
        };
        let mut events = vec![Event::ConnectionReauthorized {
            connection: id.clone(),
            provider: parse(provider)?,
        }];
        let incident: Option<i64> = sqlx::query_scalar(
            "UPDATE incidents SET closed_at = $1, closed_by = 'reauthorized' \
             WHERE connection_id = $2 AND closed_at IS NULL RETURNING id",
        )
        .bind(now)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let resumed = Self::resume_ready(&mut tx, id, incident, now, &mut events).await?;
        if let Some(incident) = incident {
            Self::notify_reconnected(&mut tx, id, incident, &resumed, now).await?;
        }
        // This link is used; every other link of the connection is moot now.
        sqlx::query("UPDATE reauth_links SET used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(link_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE reauth_links SET expires_at = CASE WHEN expires_at < $1 THEN expires_at ELSE $1 END WHERE connection_id = $2",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        events::write(&mut tx, self.backend, &events, now).await?;
        tx.commit().await?;
        Ok(Reauthorized {
            incident_closed: incident,
            resumed,
        })
    }
}
