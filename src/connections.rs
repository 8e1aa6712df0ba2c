//! Adding a connection: the rules every way in follows (the command line today; the platform's
//! API and connect links next). The caller parses its own input; this checks what a connection
//! must be (a configured provider, a known account) and stores it.

use chrono::{DateTime, Utc};

use crate::check::HttpClient;
use crate::config::{AccountSource, Config};
use crate::domain::{ConnectionId, EmailAddress, ProviderId};
use crate::store::{NewConnection, Store, StoreError};
use crate::tokens::TokenSet;

/// A connection to add, its input already parsed.
#[derive(Debug)]
pub struct AddConnection {
    pub provider: ProviderId,
    pub name: String,
    pub owner: EmailAddress,
    /// The account as the caller names it, if it does.
    pub account: Option<String>,
    /// Store it even when its account cannot be known (it can then never be reauthorized).
    pub allow_unknown_account: bool,
    pub tokens: TokenSet,
}

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("no provider \"{provider}\" is configured (configured: {configured})")]
    UnknownProvider {
        provider: ProviderId,
        configured: String,
    },
    #[error("the grant belongs to {found}, not to {given}")]
    AccountMismatch { given: String, found: String },
    #[error(
        "the account this grant belongs to cannot be known (provider \"{provider}\" learns it from {source_}, which named none)"
    )]
    AccountUnknown {
        provider: ProviderId,
        source_: &'static str,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The provider's config, or the error that names the configured ones.
pub fn configured<'c>(
    config: &'c Config,
    provider: &ProviderId,
) -> Result<&'c crate::config::ProviderConfig, AddError> {
    config.provider(provider).ok_or_else(|| {
        let known: Vec<&str> = config.providers.keys().map(ProviderId::as_str).collect();
        AddError::UnknownProvider {
            provider: provider.clone(),
            configured: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        }
    })
}

/// Checks and stores a new connection; nothing is written when a rule refuses it.
pub async fn add(
    config: &Config,
    store: &dyn Store,
    mut new: AddConnection,
    now: DateTime<Utc>,
) -> Result<ConnectionId, AddError> {
    let provider = configured(config, &new.provider)?;
    // A lifetime the provider does not state in its responses, known from the config.
    if new.tokens.refresh_token.is_some() && new.tokens.refresh_expires_at.is_none() {
        new.tokens.refresh_expires_at = provider
            .refresh_token_lifetime
            .and_then(|l| chrono::TimeDelta::from_std(l).ok())
            .map(|l| now + l);
    }
    let http = HttpClient::new(&config.limits)?;
    let identity = crate::account::of_grant(provider, &new.tokens, &http).await;
    let account = match (new.account, identity.primary()) {
        (Some(given), Some(found)) if !identity.is(&given) => {
            return Err(AddError::AccountMismatch {
                given,
                found: found.to_owned(),
            });
        }
        (Some(given), _) => Some(given),
        (None, learned) => learned.map(str::to_owned),
    };
    if account.is_none() && !new.allow_unknown_account {
        return Err(AddError::AccountUnknown {
            provider: new.provider,
            source_: match provider.account_from {
                AccountSource::Probe(_) => "the probe's answer",
                AccountSource::IdToken => "the id_token's subject or verified e-mail",
            },
        });
    }
    let id = store
        .add_connection(
            NewConnection {
                provider: new.provider,
                name: new.name,
                owner: new.owner,
                account,
                tokens: new.tokens,
            },
            now,
        )
        .await?;
    Ok(id)
}
