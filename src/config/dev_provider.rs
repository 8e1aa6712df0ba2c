//! `[dev_provider]`: a development OAuth provider served by the daemon itself, so that the whole
//! loop (connect, refresh, revoke, pause, e-mail, reconnect, resume) can be tried on one machine
//! with nothing else installed. Loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::validate::Checker;
use super::*;

#[derive(Debug, Clone)]
pub struct DevProviderConfig {
    /// A loopback address: the provider accepts any test account without a password.
    pub listen: SocketAddr,
    /// The `[providers.X]` whose client (id and secret) it serves.
    pub provider: ProviderId,
    /// The test accounts its consent page offers.
    pub accounts: Vec<EmailAddress>,
    pub access_lifetime: Duration,
    /// Where its grants are kept across restarts; in memory only when unset.
    pub state_file: Option<PathBuf>,
}

impl Checker<'_> {
    pub(super) fn dev_provider(
        &mut self,
        s: raw::DevProvider,
        providers: Option<&BTreeMap<ProviderId, ProviderConfig>>,
    ) -> Option<DevProviderConfig> {
        let listen = match s.listen.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) if a.ip().is_loopback() => Some(a),
            Some(Ok(_)) => {
                self.problem(
                    "dev_provider.listen",
                    "must be a loopback address such as 127.0.0.1:9000: the development provider \
                     lets anyone sign in as any test account",
                );
                None
            }
            Some(Err(_)) => {
                self.problem(
                    "dev_provider.listen",
                    "expected an address and port such as 127.0.0.1:9000",
                );
                None
            }
            None => {
                self.problem(
                    "dev_provider.listen",
                    "missing (such as \"127.0.0.1:9000\")",
                );
                None
            }
        };
        let provider = match s.provider.as_deref().map(str::parse::<ProviderId>) {
            Some(Ok(id)) => match providers.map(|p| p.get(&id).map(ProviderConfig::oauth)) {
                Some(Some(Some(_))) => Some(id),
                Some(Some(None)) => {
                    self.problem(
                        "dev_provider.provider",
                        format!("[providers.{id}] is not an OAuth provider"),
                    );
                    None
                }
                Some(None) => {
                    self.problem(
                        "dev_provider.provider",
                        format!("there is no [providers.{id}]"),
                    );
                    None
                }
                // The providers had problems of their own, already reported.
                None => None,
            },
            Some(Err(e)) => {
                self.problem("dev_provider.provider", e.to_string());
                None
            }
            None => {
                self.problem(
                    "dev_provider.provider",
                    "missing: the [providers.X] whose client it serves",
                );
                None
            }
        };
        let raw_accounts = s
            .accounts
            .unwrap_or_else(|| vec!["ada@example.com".to_owned(), "grace@example.com".to_owned()]);
        let mut accounts = Vec::with_capacity(raw_accounts.len());
        for (i, a) in raw_accounts.iter().enumerate() {
            match a.parse::<EmailAddress>() {
                Ok(a) => accounts.push(a),
                Err(e) => self.problem(&format!("dev_provider.accounts[{i}]"), e.to_string()),
            }
        }
        if raw_accounts.is_empty() {
            self.problem(
                "dev_provider.accounts",
                "must name at least one test account",
            );
        }
        let access_lifetime = self.duration(
            "dev_provider.access_lifetime",
            s.access_lifetime.as_deref(),
            "1h",
        );
        let state_file = match s.state_file.as_deref() {
            Some(p) => Some(Some(self.path("dev_provider.state_file", p)?)),
            None => Some(None),
        };
        Some(DevProviderConfig {
            listen: listen?,
            provider: provider?,
            accounts,
            access_lifetime: access_lifetime?,
            state_file: state_file?,
        })
    }
}
