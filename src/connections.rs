//! Adding a connection: the rules every way in follows (the command line, the platform's API,
//! connect links). The caller parses its own input; this checks what a connection must be (a
//! configured provider, the credential it takes, a known account) and stores it.

use chrono::{DateTime, Utc};

use crate::check::HttpClient;
use crate::config::{AccountSource, Config, ProviderAuth};
use crate::domain::{ConnectionId, EmailAddress, Name, ProviderId};
use crate::store::{ConnectionFilter, NewConnection, Store, StoreError};
use crate::tokens::TokenSet;
use secrecy::SecretString;

/// A connection to add, its input already parsed.
#[derive(Debug)]
pub struct AddConnection {
    pub provider: ProviderId,
    pub name: Name,
    pub owner: EmailAddress,
    /// The account as the caller names it, if it does.
    pub account: Option<String>,
    /// Store it even when its account cannot be known (it can then never be reauthorized).
    pub allow_unknown_account: bool,
    pub credential: Credential,
    /// The platform's own id: adding again with the same one gives back the first.
    pub external_id: Option<String>,
    /// A JSON object, as text.
    pub metadata: Option<String>,
}

/// What a connection holds: a grant's tokens, an API key, or a user name and password. Each
/// is stored as one sealed secret (a key as it is, a password as `user:password`) beside its
/// kind; only OAuth tokens are ever refreshed.
pub enum Credential {
    OAuth(TokenSet),
    ApiKey(SecretString),
    Basic {
        username: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::OAuth(_) => "Credential::OAuth(..)",
            Credential::ApiKey(_) => "Credential::ApiKey(..)",
            Credential::Basic { .. } => "Credential::Basic(..)",
        })
    }
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::OAuth(_) => "oauth",
            Credential::ApiKey(_) => "api_key",
            Credential::Basic { .. } => "basic",
        }
    }

    /// A key or a password as the JSON a platform sends (`{"api_key": …}` or
    /// `{"username": …, "password": …}`), for a provider of that `auth`. Errors never quote
    /// the value.
    pub fn from_json(auth: &ProviderAuth, bytes: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Key {
            api_key: SecretString,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Login {
            username: String,
            password: SecretString,
        }
        use secrecy::ExposeSecret;
        let plain = |s: &str| !s.is_empty() && s.len() <= 4096 && !s.chars().any(char::is_control);
        match auth {
            ProviderAuth::OAuth(_) => Err("this provider uses OAuth: give a token response".into()),
            ProviderAuth::ApiKey(_) => {
                let k: Key = serde_json::from_slice(bytes)
                    .map_err(|_| "expected {\"api_key\": \"…\"}".to_owned())?;
                if !plain(k.api_key.expose_secret()) {
                    return Err(
                        "api_key: expected 1 to 4096 characters, none of them control characters"
                            .into(),
                    );
                }
                Ok(Credential::ApiKey(k.api_key))
            }
            ProviderAuth::Basic => {
                let l: Login = serde_json::from_slice(bytes).map_err(|_| {
                    "expected {\"username\": \"…\", \"password\": \"…\"}".to_owned()
                })?;
                // RFC 7617: the user name ends at the first colon.
                if !plain(&l.username) || l.username.contains(':') {
                    return Err(
                        "username: expected 1 to 4096 characters, no colon, no control characters"
                            .into(),
                    );
                }
                if !plain(l.password.expose_secret()) {
                    return Err(
                        "password: expected 1 to 4096 characters, none of them control characters"
                            .into(),
                    );
                }
                Ok(Credential::Basic {
                    username: l.username,
                    password: l.password,
                })
            }
        }
    }

    /// What the probe presents: the key, `user:password`, or the access token.
    pub fn secret(&self) -> SecretString {
        use secrecy::ExposeSecret;
        match self {
            Credential::OAuth(tokens) => tokens.access_token.clone(),
            Credential::ApiKey(key) => key.clone(),
            Credential::Basic { username, password } => {
                SecretString::from(format!("{username}:{}", password.expose_secret()))
            }
        }
    }

    /// A copy in the form the store seals, to ask the provider with before storing.
    pub fn secret_tokens(&self) -> TokenSet {
        match self {
            Credential::OAuth(tokens) => tokens.clone(),
            _ => TokenSet::secret_only(self.secret()),
        }
    }

    /// The form the store seals: the secret in `access_token`, nothing to refresh.
    pub fn into_tokens(self) -> TokenSet {
        match self {
            Credential::OAuth(tokens) => tokens,
            other => TokenSet::secret_only(other.secret()),
        }
    }
}

/// What an add did (of a connection, or of a pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added<Id = ConnectionId> {
    Created(Id),
    /// One with the same external id already existed: nothing was written.
    Existing(Id),
}

impl<Id> Added<Id> {
    pub fn id(&self) -> &Id {
        match self {
            Added::Created(id) | Added::Existing(id) => id,
        }
    }
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
    #[error("provider \"{provider}\" takes {expected} credentials, not {given}")]
    WrongCredential {
        provider: ProviderId,
        expected: &'static str,
        given: &'static str,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An account as a caller names it: trimmed, and none when blank; at most 256 printable
/// characters (it is shown on pages and in e-mails).
pub fn account(given: Option<String>) -> Result<Option<String>, &'static str> {
    let account = given.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty());
    match &account {
        Some(a) if a.len() > 256 || !crate::domain::is_plain_text(a) => {
            Err("expected up to 256 printable characters")
        }
        _ => Ok(account),
    }
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

/// The connection with this external id, if there is one.
pub async fn by_external_id(
    store: &dyn Store,
    external_id: &str,
) -> Result<Option<ConnectionId>, StoreError> {
    let filter = ConnectionFilter {
        external_id: Some(external_id.to_owned()),
        ..Default::default()
    };
    let found = store.list_connections(&filter, None, 1).await?;
    Ok(found.into_iter().next().map(|c| c.id))
}

/// Checks and stores a new connection; nothing is written when a rule refuses it.
pub async fn add(
    config: &Config,
    store: &dyn Store,
    new: AddConnection,
    now: DateTime<Utc>,
) -> Result<Added, AddError> {
    let provider = configured(config, &new.provider)?;
    if new.credential.kind() != provider.auth.kind() {
        return Err(AddError::WrongCredential {
            provider: new.provider,
            expected: provider.auth.kind(),
            given: new.credential.kind(),
        });
    }
    let credential_kind = provider.auth.kind();
    let mut tokens = new.credential.into_tokens();
    if let Some(oauth) = provider.oauth() {
        tokens = tokens.new_grant(oauth.issues_refresh_tokens);
    }
    if let Some(ext) = &new.external_id
        && let Some(id) = by_external_id(store, ext).await?
    {
        return Ok(Added::Existing(id));
    }
    // A lifetime the provider does not state in its responses, known from the config.
    if tokens.refresh_token.is_some() && tokens.refresh_expires_at.is_none() {
        tokens.refresh_expires_at = provider
            .oauth()
            .and_then(|o| o.refresh_token_lifetime)
            .and_then(|l| chrono::TimeDelta::from_std(l).ok())
            .map(|l| now + l);
    }
    let http = HttpClient::new(&config.limits)?;
    let identity = crate::account::of_grant(provider, &tokens, &http).await;
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
            source_: match (&provider.account_from, provider.auth.is_oauth()) {
                (AccountSource::Probe(_), _) => "the probe's answer",
                (AccountSource::IdToken, true) => "the id_token's subject or verified e-mail",
                // A key has no id_token: only account_from = "probe:/pointer" can name one.
                (AccountSource::IdToken, false) => "nowhere (no account_from = \"probe:/…\")",
            },
        });
    }
    let external_id = new.external_id.clone();
    let added = store
        .add_connection(
            NewConnection {
                provider: new.provider,
                name: new.name.into(),
                owner: new.owner,
                account,
                tokens,
                credential_kind,
                external_id: new.external_id,
                metadata: new.metadata,
            },
            now,
        )
        .await;
    match (added, external_id) {
        (Ok(id), _) => Ok(Added::Created(id)),
        // Two adds with the same external id at once: the other one won.
        (Err(StoreError::ExternalIdTaken(_)), Some(ext)) => {
            match by_external_id(store, &ext).await? {
                Some(id) => Ok(Added::Existing(id)),
                None => Err(StoreError::ExternalIdTaken(ext).into()),
            }
        }
        (Err(e), _) => Err(e.into()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("provider {0} is not in the config, so its tokens cannot be revoked")]
    ProviderNotConfigured(ProviderId),
    #[error(
        "provider {0} has no revocation_url; remove without revoking, or revoke at the provider"
    )]
    NoRevocationUrl(ProviderId),
    #[error("{provider} answered HTTP {status} to revoking the {hint}; the connection was kept")]
    RevokeRefused {
        provider: ProviderId,
        status: u16,
        hint: &'static str,
    },
    #[error("cannot reach {provider}: {message}; the connection was kept")]
    RevokeFailed {
        provider: ProviderId,
        message: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deletes a connection and its tokens, after revoking them at the provider (RFC 7009) when
/// asked. Refused before calling anyone while pipelines use it.
pub async fn remove(
    config: &Config,
    store: &dyn Store,
    id: &ConnectionId,
    revoke: bool,
) -> Result<(), RemoveError> {
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
    if revoke {
        revoke_at_provider(config, store, &connection).await?;
    }
    store.remove_connection(id).await?;
    Ok(())
}

async fn revoke_at_provider(
    config: &Config,
    store: &dyn Store,
    connection: &crate::store::Connection,
) -> Result<(), RemoveError> {
    use crate::classify::Outcome;
    let provider = config
        .provider(&connection.provider)
        .ok_or_else(|| RemoveError::ProviderNotConfigured(connection.provider.clone()))?;
    let (oauth, url) = provider
        .oauth()
        .and_then(|o| Some((o, o.revocation_url.as_ref()?)))
        .ok_or_else(|| RemoveError::NoRevocationUrl(provider.id.clone()))?;
    let http = HttpClient::new(&config.limits)?;
    let tokens = store.tokens(&connection.id).await?;
    // The refresh token first: revoking it ends the whole grant at most providers.
    let mut pairs = vec![(&tokens.access_token, "access_token")];
    if let Some(r) = &tokens.refresh_token {
        pairs.insert(0, (r, "refresh_token"));
    }
    for (token, hint) in pairs {
        match http.revoke(url, oauth, token, hint).await {
            // RFC 7009 §2.2: 200 also for a token that was already invalid.
            Outcome::Response(r) if r.status == 200 => {}
            Outcome::Response(r) => {
                return Err(RemoveError::RevokeRefused {
                    provider: provider.id.clone(),
                    status: r.status,
                    hint,
                });
            }
            Outcome::Transport(t) => {
                return Err(RemoveError::RevokeFailed {
                    provider: provider.id.clone(),
                    message: t.message,
                });
            }
        }
    }
    tracing::info!(connection = %connection.id, provider = %provider.id, "tokens revoked at the provider");
    Ok(())
}

/// Changes what the platform may change of a connection: its name, its owner, its metadata.
pub async fn update(
    store: &dyn Store,
    id: &ConnectionId,
    update: &crate::store::ConnectionUpdate,
    now: DateTime<Utc>,
) -> Result<crate::store::Connection, StoreError> {
    store.update_connection(id, update, now).await
}

/// Checks what a connect link would create before it is made: a configured provider that
/// owners sign in to (a key or a password comes with the re-entry form, not yet).
pub fn invitable(
    config: &Config,
    invite: &crate::store::connect::NewConnectLink,
) -> Result<(), AddError> {
    configured(config, &invite.provider).map(|_| ())
}

/// What became of an invitation.
#[derive(Debug)]
pub enum Invited {
    /// The link, for the caller to hand over.
    Link {
        url: String,
        expires_at: DateTime<Utc>,
    },
    /// Queued for e-mail to the owner; the link is made when it is sent and exists only there.
    Emailed,
}

/// A connect link for `invite`, checked first; e-mailed to its owner when `email`.
pub async fn invite(
    config: &Config,
    store: &dyn Store,
    invite: &crate::store::connect::NewConnectLink,
    email: bool,
) -> Result<Invited, AddError> {
    invitable(config, invite)?;
    if email {
        store.queue_invitation(invite, Utc::now()).await?;
        return Ok(Invited::Emailed);
    }
    let (url, expires_at) = crate::links::invite(
        store,
        &config.http.public_base_url,
        config.notices.connect_link_lifetime,
        invite,
    )
    .await?;
    Ok(Invited::Link { url, expires_at })
}
