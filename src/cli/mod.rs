//! The `credwatch` command line: argument shapes here, what each command does in `commands`.

mod check;
mod commands;
mod events;
mod providers;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, DEFAULT_PATH};
use crate::crypto::CryptoError;
use crate::daemon::DaemonError;
use crate::store::StoreError;

/// Keeps third-party OAuth connections healthy.
#[derive(Debug, Parser)]
#[command(name = "credwatch", version, about, propagate_version = true)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "CREDWATCH_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    Run,
    /// Bring the database schema up to date (also done on every start).
    Migrate,
    /// Check the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Encryption keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Keys for the platform's API.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Stored OAuth grants.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// What reads or writes through connections, and how far it got.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// What the platform is told: the event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Webhook endpoints and their deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// The catalog of providers credwatch knows (`[providers.X] preset = "ID"`).
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// Check connections now (refresh, probe, classify, record) and print what each check found.
    /// Exits 0 when the checks ran, whatever they found.
    Check {
        /// Check every connection, due or not.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// The connections to check.
        #[arg(value_name = "ID", required_unless_present = "all")]
        ids: Vec<String>,
        /// One JSON object per check.
        #[arg(long)]
        json: bool,
    },
    /// Run one sweep now, as the daemon's scheduler would (every due connection, within the
    /// limits), print what it did, and exit.
    Sweep,
    /// The development OAuth provider of `[dev_provider]` (config/dev.toml), served by the
    /// running daemon.
    #[command(subcommand, name = "dev-provider")]
    DevProvider(DevProviderCommand),
    /// Print a shell's completion script for credwatch (the package installs them).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print credwatch's man page (roff), made from this command line's own help.
    #[command(hide = true)]
    Manpage,
    /// Every connection and pipeline with its health and state.
    Status {
        /// Machine-readable output (the shape is documented in the README).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Every preset: what it covers and how its grants behave.
    List,
    /// One preset: every setting with the documentation page that states it, and what the
    /// provider's documentation does not confirm.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DevProviderCommand {
    /// Revoke every live grant of a test account, as its owner would at a real provider;
    /// credwatch finds out at the connection's next check.
    Revoke { account: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate everything: syntax, keys, URLs, cron strings, files and key lengths.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new random 32-byte key to PATH (never overwrites).
    Generate { path: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events in the order they happened, one JSON object per line (as the feed answers them).
    List {
        /// Only events after this one (an id such as evt_0000000000000042).
        #[arg(long)]
        after: Option<String>,
        /// Only events of this type (repeatable).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Per endpoint: deliveries waiting, the oldest one's age, delivered, given up, last error.
    Status,
    /// Deliveries of ENDPOINT waiting for a retry, and those given up, are due now.
    Retry { endpoint: String },
    /// Sends ENDPOINT every event since TIME again (RFC 3339, or a duration ago such as 2h).
    Replay {
        endpoint: String,
        #[arg(long, value_name = "TIME")]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Print a new random API key once, with the config lines that let it in. Only its
    /// SHA-256 goes into the config: the key itself is shown here and nowhere else.
    Generate {
        /// Who uses it; logged with every request it makes (letters, digits, '-', '_', '.').
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Store a grant from an OAuth token response (JSON) read from FILE, or stdin with `-`; or,
    /// for a provider that takes keys or passwords, those (`--credentials`).
    Add {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        name: String,
        /// Who authorized it; gets the e-mails.
        #[arg(long)]
        owner: String,
        /// The account it belongs to; by default learned as the provider's `account_from`
        /// says (the id_token's subject or verified e-mail, or a field of the probe's answer).
        #[arg(long)]
        account: Option<String>,
        /// Store it even though its account cannot be known. Its owner then cannot
        /// reauthorize it: a grant for another account could not be told apart.
        #[arg(long)]
        allow_unknown_account: bool,
        /// For an OAuth provider. Never on the command line itself: every local user can read argv.
        #[arg(
            long,
            value_name = "FILE|-",
            required_unless_present = "credentials",
            conflicts_with = "credentials"
        )]
        tokens: Option<String>,
        /// For a provider with `auth = "api_key"` ({"api_key": "…"}) or `"basic"`
        /// ({"username": "…", "password": "…"}), as JSON read from FILE or stdin.
        #[arg(long, value_name = "FILE|-")]
        credentials: Option<String>,
    },
    /// One line per connection.
    List,
    /// Everything about one connection except its tokens.
    Show { id: String },
    /// Delete a connection and its tokens.
    Remove {
        id: String,
        /// First revoke its tokens at the provider (RFC 7009).
        #[arg(long)]
        revoke: bool,
    },
    /// Print a fresh reauthorize link, for helping an owner by hand.
    ReauthLink { id: String },
    /// Print a link that lets OWNER connect a new data source of PROVIDER (single use).
    Invite {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner: String,
        /// Only a grant for this account is accepted.
        #[arg(long)]
        account: Option<String>,
        /// The platform's own id for the connection to be.
        #[arg(long)]
        external_id: Option<String>,
        /// E-mail the link to OWNER ("Connect your … account") instead of printing it; the
        /// running daemon sends it.
        #[arg(long)]
        email: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Register a pipeline that depends on one or more connections.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long = "connection", value_name = "ID", required = true)]
        connections: Vec<String>,
        /// Its current ingestion position (opaque: cursor, offset, timestamp).
        #[arg(long)]
        position: Option<String>,
    },
    /// Report how far a pipeline got.
    Position { id: String, position: String },
    /// Pause a pipeline for the platform's own reasons (credwatch never lifts such a pause).
    Pause {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift the platform's pause (refused while one of its connections is broken).
    Resume { id: String },
    /// One line per pipeline.
    List,
    /// Everything about one pipeline, with its recent pauses and resumes.
    Show { id: String },
    /// Delete a pipeline.
    Remove { id: String },
}

/// What went wrong, sorted by whose move it is; the exit code follows from it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Check(#[from] crate::check::CheckError),
    /// Something outside failed (a provider, the network): exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// sysexits(3): 78 for configuration, 65 for bad input data, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_)
            | CliError::Daemon(DaemonError::Config(_))
            | CliError::Daemon(DaemonError::Mailer(crate::mailer::MailerError::Notice(_))) => 78,
            CliError::Input(_) => 65,
            CliError::Store(e) if e.is_bad_input() => 65,
            _ => 1,
        }
    }
}

impl StoreError {
    fn is_bad_input(&self) -> bool {
        matches!(
            self,
            StoreError::ConnectionNotFound(_)
                | StoreError::PipelineNotFound(_)
                | StoreError::ConnectionInUse { .. }
                | StoreError::PausedForBrokenConnection { .. }
        )
    }
}

pub async fn execute(cli: Cli) -> Result<(), CliError> {
    commands::execute(cli).await
}
