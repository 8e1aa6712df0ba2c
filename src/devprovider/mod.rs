//! A development OAuth provider, served by the daemon when the config has `[dev_provider]`:
//! authorization code with PKCE, refresh tokens that rotate, a userinfo endpoint to probe, a
//! consent page that asks which test account to use, and revocation (a button on its page,
//! `credwatch dev-provider revoke`, and RFC 7009's endpoint). It exists so that the whole loop
//! can be watched on one machine; it listens on loopback only and keeps no password.
//!
//! It behaves as strict providers do where that matters to credwatch: a refresh token works
//! once, presenting a retired one revokes the whole grant (reuse detection), and a revoked
//! grant answers `invalid_grant`.

mod routes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use routes::{bind, revoke_account};

use crate::config::DevProviderConfig;

#[derive(Debug, thiserror::Error)]
pub enum DevProviderError {
    #[error("dev_provider: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("dev_provider.state_file {path}: {message}")]
    State { path: String, message: String },
    #[error("dev_provider.provider: [providers.{0}] is not an OAuth provider")]
    NotOAuth(String),
    #[error("dev_provider: page templates: {0}")]
    Pages(#[from] minijinja::Error),
    #[error("{0}")]
    Command(String),
}

/// One grant: an account's consent, with the hashes of its live tokens (never the tokens).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub account: String,
    pub scope: String,
    pub created_at: i64,
    access_hash: String,
    pub access_expires_at: i64,
    refresh_hash: String,
    /// Refresh tokens already rotated away: presenting one again revokes the grant.
    retired: Vec<String>,
    pub refreshes: u64,
    pub refreshed_at: Option<i64>,
    pub revoked: Option<Revoked>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked {
    pub at: i64,
    pub why: String,
}

/// An authorization code waiting to be exchanged (in memory: it lives a minute).
struct Code {
    account: String,
    scope: String,
    redirect_uri: String,
    challenge: String,
    expires_at: i64,
}

/// New tokens for the token endpoint's answer.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

impl std::fmt::Debug for Issued {
    // The provider's own tokens are still tokens: they stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why the token endpoint refuses: its `error` and `error_description`.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal(pub &'static str, pub String);

#[derive(Default, Serialize, Deserialize)]
struct Grants {
    grants: Vec<Grant>,
}

pub struct DevProvider {
    config: DevProviderConfig,
    grants: Mutex<Grants>,
    codes: Mutex<HashMap<String, Code>>,
    /// Serialises writes of the state file, so an older snapshot never replaces a newer one.
    saving: Mutex<()>,
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", crate::links::random_token())
}

/// What the state file keeps of a token: its SHA-256 (as links keep theirs), in hex.
fn hash(token: &str) -> String {
    crate::links::hash(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// PKCE S256: the challenge is the URL-safe Base64 of the verifier's SHA-256.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

impl DevProvider {
    pub fn load(config: DevProviderConfig) -> Result<Arc<Self>, DevProviderError> {
        let grants = match &config.state_file {
            Some(path) => read_state(path)?,
            None => Grants::default(),
        };
        Ok(Arc::new(Self {
            config,
            grants: Mutex::new(grants),
            codes: Mutex::new(HashMap::new()),
            saving: Mutex::new(()),
        }))
    }

    pub fn config(&self) -> &DevProviderConfig {
        &self.config
    }

    pub fn grants(&self) -> Vec<Grant> {
        self.lock().grants.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Grants> {
        // A panic while holding it cannot leave the grants half-written: each change is one
        // assignment, so the data is still whole.
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consent was given: a code for the redirect, good for one exchange within a minute.
    pub fn approve(
        &self,
        account: &str,
        scope: &str,
        redirect_uri: &str,
        challenge: &str,
        now: i64,
    ) -> String {
        let code = random_token("dev_code_");
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, c| c.expires_at > now);
        codes.insert(
            hash(&code),
            Code {
                account: account.to_owned(),
                scope: scope.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                challenge: challenge.to_owned(),
                expires_at: now + 60,
            },
        );
        code
    }

    pub fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<Issued, Refusal> {
        let taken = {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            codes.remove(&hash(code))
        };
        let Some(c) = taken.filter(|c| c.expires_at > now) else {
            return Err(Refusal(
                "invalid_grant",
                "unknown, used or expired code".into(),
            ));
        };
        if c.redirect_uri != redirect_uri {
            return Err(Refusal(
                "invalid_grant",
                "redirect_uri differs from the authorization request's".into(),
            ));
        }
        if !pkce_matches(verifier, &c.challenge) {
            return Err(Refusal(
                "invalid_grant",
                "code_verifier does not match the code_challenge".into(),
            ));
        }
        let access = random_token("dev_at_");
        let refresh = random_token("dev_rt_");
        let grant = Grant {
            id: random_token("grant_").chars().take(18).collect(),
            account: c.account,
            scope: c.scope.clone(),
            created_at: now,
            access_hash: hash(&access),
            access_expires_at: now + self.lifetime(),
            refresh_hash: hash(&refresh),
            retired: Vec::new(),
            refreshes: 0,
            refreshed_at: None,
            revoked: None,
        };
        self.change(|g| g.grants.push(grant));
        Ok(self.issued(access, refresh, c.scope))
    }

    /// Rotation: the presented refresh token is retired and a new pair issued.
    pub fn refresh(&self, token: &str, now: i64) -> Result<Issued, Refusal> {
        let presented = hash(token);
        let access = random_token("dev_at_");
        let refresh = random_token("dev_rt_");
        let lifetime = self.lifetime();
        let mut outcome = Err(Refusal("invalid_grant", "unknown refresh token".into()));
        self.change(|g| {
            if let Some(grant) = g.grants.iter_mut().find(|x| x.refresh_hash == presented) {
                if let Some(r) = &grant.revoked {
                    outcome = Err(Refusal(
                        "invalid_grant",
                        format!("the grant was revoked: {}", r.why),
                    ));
                    return;
                }
                let old = std::mem::replace(&mut grant.refresh_hash, hash(&refresh));
                grant.retired.push(old);
                grant.access_hash = hash(&access);
                grant.access_expires_at = now + lifetime;
                grant.refreshes += 1;
                grant.refreshed_at = Some(now);
                outcome = Ok(grant.scope.clone());
            } else if let Some(grant) = g.grants.iter_mut().find(|x| x.retired.contains(&presented))
            {
                // As strict providers do: a used refresh token coming back means two holders.
                if grant.revoked.is_none() {
                    grant.revoked = Some(Revoked {
                        at: now,
                        why: "a rotated refresh token was presented again".into(),
                    });
                }
                outcome = Err(Refusal(
                    "invalid_grant",
                    "refresh token already used: the grant is revoked".into(),
                ));
            }
        });
        outcome.map(|scope| self.issued(access, refresh, scope))
    }

    /// The account a live access token belongs to (the userinfo endpoint).
    pub fn account_of(&self, access_token: &str, now: i64) -> Option<String> {
        let h = hash(access_token);
        self.lock()
            .grants
            .iter()
            .find(|g| g.access_hash == h)
            .filter(|g| g.revoked.is_none() && g.access_expires_at > now)
            .map(|g| g.account.clone())
    }

    /// Revokes the grants the predicate picks; how many were live.
    pub fn revoke(&self, why: &str, now: i64, pick: impl Fn(&Grant) -> bool) -> usize {
        let mut n = 0;
        self.change(|g| {
            for grant in g.grants.iter_mut().filter(|x| x.revoked.is_none()) {
                if pick(grant) {
                    grant.revoked = Some(Revoked {
                        at: now,
                        why: why.to_owned(),
                    });
                    n += 1;
                }
            }
        });
        n
    }

    /// RFC 7009: either token of a grant revokes it.
    pub fn revoke_token(&self, token: &str, now: i64) -> usize {
        let h = hash(token);
        self.revoke("revoked by its client", now, |g| {
            g.access_hash == h || g.refresh_hash == h
        })
    }

    fn lifetime(&self) -> i64 {
        i64::try_from(self.config.access_lifetime.as_secs()).unwrap_or(i64::MAX / 2)
    }

    fn issued(&self, access_token: String, refresh_token: String, scope: String) -> Issued {
        Issued {
            access_token,
            refresh_token,
            expires_in: self.lifetime(),
            scope,
        }
    }

    /// Applies a change and writes the state file (if any) before answering: a token handed
    /// out must still be known after a restart.
    fn change(&self, f: impl FnOnce(&mut Grants)) {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = {
            let mut g = self.lock();
            f(&mut g);
            self.config
                .state_file
                .as_ref()
                .map(|_| serde_json::to_vec_pretty(&*g))
        };
        if let (Some(path), Some(Ok(bytes))) = (&self.config.state_file, snapshot)
            && let Err(e) = write_state(path, &bytes)
        {
            tracing::warn!(
                "dev_provider: cannot write {}: {e} (grants are kept in memory)",
                path.display()
            );
        }
    }
}

fn read_state(path: &Path) -> Result<Grants, DevProviderError> {
    let error = |message: String| DevProviderError::State {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            error(format!(
                "not the development provider's grants ({e}); remove it to start over"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Grants::default()),
        Err(e) => Err(error(e.to_string())),
    }
}

fn write_state(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
