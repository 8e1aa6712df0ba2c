//! `connection remove --revoke`: tell the provider first (RFC 7009), then forget the grant.

use super::CliError;
use crate::check::HttpClient;
use crate::classify::Outcome;
use crate::config::Config;
use crate::domain::ConnectionId;
use crate::store::{Store, StoreError};

/// Revokes the connection's tokens at its provider. Refuses before calling anyone when the
/// connection cannot be removed anyway (pipelines use it) or the provider has no revocation URL.
pub async fn revoke(config: &Config, store: &dyn Store, id: &ConnectionId) -> Result<(), CliError> {
    let connection = store.connection(id).await?;
    let users = store.pipelines_of(id).await?;
    if !users.is_empty() {
        let pipelines: Vec<String> = users.iter().map(|p| p.id.to_string()).collect();
        return Err(StoreError::ConnectionInUse {
            id: id.clone(),
            pipelines: pipelines.join(", "),
        }
        .into());
    }
    let provider = config.provider(&connection.provider).ok_or_else(|| {
        CliError::Input(format!(
            "--revoke: provider {} is not in {}",
            connection.provider,
            config.path.display()
        ))
    })?;
    let url = provider.revocation_url.as_ref().ok_or_else(|| {
        CliError::Input(format!(
            "--revoke: provider {} has no revocation_url; remove without --revoke, or revoke at the provider",
            provider.id
        ))
    })?;
    let http = HttpClient::new(&config.limits).map_err(crate::check::CheckError::from)?;
    let tokens = store.tokens(id).await?;
    // The refresh token first: revoking it ends the whole grant at most providers.
    let mut pairs = vec![(&tokens.access_token, "access_token")];
    if let Some(r) = &tokens.refresh_token {
        pairs.insert(0, (r, "refresh_token"));
    }
    for (token, hint) in pairs {
        match http.revoke(url, provider, token, hint).await {
            // RFC 7009 §2.2: 200 also for a token that was already invalid.
            Outcome::Response(r) if r.status == 200 => {}
            Outcome::Response(r) => {
                return Err(CliError::Failed(format!(
                    "--revoke: {} answered HTTP {} to revoking the {hint}; the connection was kept",
                    provider.id, r.status
                )));
            }
            Outcome::Transport(t) => {
                return Err(CliError::Failed(format!(
                    "--revoke: cannot reach {}: {}; the connection was kept",
                    provider.id, t.message
                )));
            }
        }
    }
    println!("revoked the tokens of {id} at {}", provider.id);
    Ok(())
}
