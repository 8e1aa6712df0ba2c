//! What each command does. Input is parsed and checked before the database is touched, so a bad
//! command writes nothing.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use super::table::Table;
use super::*;
use crate::config::Config;
use crate::connections::{AddConnection, AddError, Credential, Invited, RemoveError};
use crate::domain::{ConnectionId, EmailAddress, Name, PipelineId, Position, ProviderId};
use crate::pipelines::{self, AddPipeline};
use crate::store::{self, Connection, Pipeline, Store};
use crate::tokens::TokenSet;

/// Token responses are small; anything bigger is not one.
const MAX_TOKEN_INPUT: u64 = 1024 * 1024;

pub async fn execute(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Key(KeyCommand::Generate { path }) => {
            let id = crate::crypto::generate_key_file(&path)?;
            println!("wrote a new key to {} (key id {id})", path.display());
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Generate { name }) => {
            if !crate::config::valid_key_name(&name) {
                return Err(CliError::Input(
                    "NAME: expected 1 to 64 letters, digits, '-', '_' or '.'".into(),
                ));
            }
            let key = crate::api::generate_key();
            let hash: String = crate::config::api_key_sha256(&key)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("{key}");
            println!();
            println!(
                "# Give the key above to {name}; it is not stored anywhere. Add to the config,"
            );
            println!("# then reload (systemctl reload credwatch):");
            println!("[[api.keys]]");
            println!("name = \"{name}\"");
            println!("sha256 = \"{hash}\"");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let config = Config::load(&cli.config)?;
            println!(
                "{}: ok ({} provider{}, key id {})",
                cli.config.display(),
                config.providers.len(),
                if config.providers.len() == 1 { "" } else { "s" },
                config.keyring.current_id()
            );
            for p in config.providers.values() {
                if let Some(preset) = &p.preset {
                    println!(
                        "providers.{}: preset {}; from the preset: {}",
                        p.id,
                        preset.id,
                        preset.keys.join(", ")
                    );
                }
            }
            Ok(())
        }
        Command::Providers(cmd) => super::providers::run(cmd),
        Command::Completions { shell } => {
            let mut command = <super::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "credwatch", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage => {
            let command = <super::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(&config.log);
            crate::daemon::run(config).await?;
            Ok(())
        }
        Command::Migrate => {
            let config = Config::load(&cli.config)?;
            open_store(&config).await?;
            println!("database schema is up to date");
            Ok(())
        }
        Command::Connection(cmd) => connection(&Config::load(&cli.config)?, cmd).await,
        Command::Pipeline(cmd) => pipeline(&Config::load(&cli.config)?, cmd).await,
        Command::Status { json } => status(&Config::load(&cli.config)?, json).await,
        Command::Webhooks(cmd) => super::events::webhooks(&Config::load(&cli.config)?, cmd).await,
        Command::Events(EventsCommand::List {
            after,
            types,
            limit,
        }) => super::events::list(&Config::load(&cli.config)?, after, types, limit).await,
        Command::DevProvider(super::DevProviderCommand::Revoke { account }) => {
            let config = Config::load(&cli.config)?;
            let Some(dev) = &config.dev_provider else {
                return Err(CliError::Input(format!(
                    "{} has no [dev_provider] section (config/dev.toml has one)",
                    cli.config.display()
                )));
            };
            let n = crate::devprovider::revoke_account(dev, &account)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            match n {
                0 => println!("{account} has no live grant"),
                1 => println!("revoked 1 grant of {account}"),
                n => println!("revoked {n} grants of {account}"),
            }
            Ok(())
        }
        Command::Sweep => super::check::sweep(&Config::load(&cli.config)?).await,
        Command::Check { all, ids, json } => {
            super::check::check(&Config::load(&cli.config)?, all, &ids, json).await
        }
    }
}

pub(super) async fn open_store(config: &Config) -> Result<Arc<dyn Store>, CliError> {
    Ok(store::open(&config.database, config.keyring.clone()).await?)
}

pub(super) fn input<T: std::str::FromStr>(what: &str, value: &str) -> Result<T, CliError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| CliError::Input(format!("{what}: {e}")))
}

fn name(value: &str) -> Result<Name, CliError> {
    input("--name", value)
}

fn read_tokens(source: &str) -> Result<Vec<u8>, CliError> {
    read_secret_input("--tokens", source)
}

/// A token response or credentials, from a file or stdin (never argv), size-capped.
fn read_secret_input(flag: &str, source: &str) -> Result<Vec<u8>, CliError> {
    use crate::files::read_at_most;
    let read = if source == "-" {
        read_at_most(std::io::stdin(), MAX_TOKEN_INPUT)
    } else {
        std::fs::File::open(source).and_then(|f| read_at_most(f, MAX_TOKEN_INPUT))
    };
    read.map_err(|e| CliError::Input(format!("{flag}: cannot read {source}: {e}")))?
        .ok_or_else(|| CliError::Input(format!("{flag}: more than 1 MiB")))
}

/// A refused `connection add` in the command line's words (the flag to fix, exit 65).
fn add_refused(config: &Config, e: AddError) -> CliError {
    match e {
        AddError::UnknownProvider { .. } => {
            CliError::Input(format!("--provider: {e} in {}", config.path.display()))
        }
        AddError::WrongCredential { .. } => CliError::Input(format!(
            "{e}: give an OAuth provider's token response with --tokens, a key or a password with --credentials"
        )),
        AddError::AccountMismatch { .. } => CliError::Input(format!("--account: {e}")),
        AddError::AccountUnknown { .. } => CliError::Input(format!(
            "{e}: give --account, or --allow-unknown-account to store it without one, in which \
             case its owner cannot reauthorize it"
        )),
        AddError::Http(e) => CliError::Failed(format!("cannot build the HTTP client: {e}")),
        AddError::Store(e) => e.into(),
    }
}

async fn connection(config: &Config, cmd: ConnectionCommand) -> Result<(), CliError> {
    match cmd {
        ConnectionCommand::Add {
            provider,
            name: display,
            owner,
            account,
            allow_unknown_account,
            tokens,
            credentials,
        } => {
            let provider: ProviderId = input("--provider", &provider)?;
            // Before anything is opened: a typo creates no database.
            let auth = match crate::connections::configured(config, &provider) {
                Ok(p) => p.auth.clone(),
                Err(e) => return Err(add_refused(config, e)),
            };
            let name = name(&display)?;
            let owner: EmailAddress = input("--owner", &owner)?;
            let account = crate::connections::account(account)
                .map_err(|e| CliError::Input(format!("--account: {e}")))?;
            let now = Utc::now();
            let credential = match (tokens, credentials) {
                (Some(tokens), None) => Credential::OAuth(
                    TokenSet::from_json(&read_tokens(&tokens)?, now)
                        .map_err(|e| CliError::Input(format!("--tokens: {e}")))?,
                ),
                (None, Some(file)) => {
                    Credential::from_json(&auth, &read_secret_input("--credentials", &file)?)
                        .map_err(|e| CliError::Input(format!("--credentials: {e}")))?
                }
                _ => {
                    return Err(CliError::Input(
                        "give either --tokens or --credentials".into(),
                    ));
                }
            };
            let store = open_store(config).await?;
            let new = AddConnection {
                provider,
                name,
                owner,
                account,
                allow_unknown_account,
                credential,
                external_id: None,
                metadata: None,
            };
            let added = crate::connections::add(config, store.as_ref(), new, now)
                .await
                .map_err(|e| add_refused(config, e))?;
            println!("{}", added.id());
        }
        ConnectionCommand::List => {
            let store = open_store(config).await?;
            let mut t = Table::new(&["ID", "PROVIDER", "STATUS", "OWNER", "NAME"]);
            for c in store.connections().await? {
                t.row(vec![
                    c.id.to_string(),
                    c.provider.to_string(),
                    c.status.to_string(),
                    c.owner.to_string(),
                    c.name,
                ]);
            }
            print!("{}", t.render());
        }
        ConnectionCommand::Show { id } => {
            let id: ConnectionId = input("connection id", &id)?;
            let store = open_store(config).await?;
            let c = store.connection(&id).await?;
            let pipelines: Vec<String> = store
                .pipelines()
                .await?
                .into_iter()
                .filter(|p| p.connections.contains(&id))
                .map(|p| p.id.to_string())
                .collect();
            print_connection(&c, &pipelines);
            let checks = store.recent_checks(&id, 5).await?;
            if !checks.is_empty() {
                println!("recent checks:");
                for k in checks {
                    println!(
                        "  {}  {:<20} {}",
                        time(Some(k.started_at)),
                        opt(k.category).to_string(),
                        k.error.as_deref().unwrap_or(if k.finished_at.is_none() {
                            "(in flight or interrupted)"
                        } else {
                            ""
                        })
                    );
                }
            }
        }
        ConnectionCommand::Remove { id, revoke } => {
            let id: ConnectionId = input("connection id", &id)?;
            let store = open_store(config).await?;
            crate::connections::remove(config, store.as_ref(), &id, revoke)
                .await
                .map_err(|e| match e {
                    RemoveError::Store(e) => CliError::Store(e),
                    e @ (RemoveError::ProviderNotConfigured(_)
                    | RemoveError::NoRevocationUrl(_)) => CliError::Input(format!("--revoke: {e}")),
                    e => CliError::Failed(format!("--revoke: {e}")),
                })?;
            if revoke {
                println!("revoked the tokens of {id} at its provider");
            }
            println!("removed {id}");
        }
        ConnectionCommand::Invite {
            provider,
            name: display,
            owner,
            account,
            external_id,
            email,
        } => {
            let invite = crate::store::connect::NewConnectLink {
                provider: input("--provider", &provider)?,
                name: name(&display)?.into(),
                owner: input("--owner", &owner)?,
                account: crate::connections::account(account)
                    .map_err(|e| CliError::Input(format!("--account: {e}")))?,
                external_id,
            };
            if let Err(e) = crate::connections::invitable(config, &invite) {
                return Err(add_refused(config, e));
            }
            let store = open_store(config).await?;
            match crate::connections::invite(config, store.as_ref(), &invite, email)
                .await
                .map_err(|e| add_refused(config, e))?
            {
                Invited::Link { url, expires_at } => {
                    println!("{url}");
                    eprintln!("valid until {}, once", time(Some(expires_at)));
                }
                Invited::Emailed => println!(
                    "an invitation to {} is queued; the running daemon e-mails it",
                    invite.owner
                ),
            }
        }
        ConnectionCommand::ReauthLink { id } => {
            let id: ConnectionId = input("connection id", &id)?;
            let store = open_store(config).await?;
            let (link, expires) = crate::links::for_connection(store.as_ref(), config, &id).await?;
            println!("{link}");
            eprintln!("valid until {}", time(Some(expires)));
        }
    }
    Ok(())
}

async fn pipeline(config: &Config, cmd: PipelineCommand) -> Result<(), CliError> {
    match cmd {
        PipelineCommand::Add {
            name: display,
            connections,
            position,
        } => {
            let name = name(&display)?;
            let connections = connections
                .iter()
                .map(|c| input("--connection", c))
                .collect::<Result<Vec<ConnectionId>, _>>()?;
            let position = position
                .map(|p| input::<Position>("--position", &p))
                .transpose()?;
            let store = open_store(config).await?;
            let new = AddPipeline {
                name,
                connections,
                position,
                external_id: None,
            };
            let added = pipelines::add(store.as_ref(), new, Utc::now()).await?;
            println!("{}", added.id());
        }
        PipelineCommand::Position { id, position } => {
            let id: PipelineId = input("pipeline id", &id)?;
            let position: Position = input("position", &position)?;
            let store = open_store(config).await?;
            let p = pipelines::report_position(store.as_ref(), &id, &position, Utc::now()).await?;
            println!("{} at {} ({})", p.id, position, p.state);
        }
        PipelineCommand::List => {
            let store = open_store(config).await?;
            let mut t = Table::new(&["ID", "STATE", "POSITION", "NAME"]);
            for p in store.pipelines().await? {
                t.row(vec![
                    p.id.to_string(),
                    p.state.to_string(),
                    opt(p.position.as_ref()),
                    p.name,
                ]);
            }
            print!("{}", t.render());
        }
        PipelineCommand::Show { id } => {
            let id: PipelineId = input("pipeline id", &id)?;
            let store = open_store(config).await?;
            print_pipeline(&store.pipeline(&id).await?);
            let events = store.pipeline_events(&id, 10).await?;
            if !events.is_empty() {
                println!("recent pauses and resumes:");
            }
            for e in events {
                let gap = match (e.gap_started_at, e.gap_ended_at) {
                    (Some(a), Some(b)) => format!(
                        ", data gap {}",
                        humantime::format_duration((b - a).to_std().unwrap_or_default())
                    ),
                    _ => String::new(),
                };
                println!(
                    "  {}  {:<8} at {}{gap}{}",
                    time(Some(e.at)),
                    e.kind,
                    opt(e.position.as_ref()),
                    e.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
            }
        }
        PipelineCommand::Pause { id, reason } => {
            let id: PipelineId = input("pipeline id", &id)?;
            let reason = reason.map(|r| input::<Name>("--reason", &r)).transpose()?;
            let store = open_store(config).await?;
            let p = pipelines::pause(store.as_ref(), &id, reason.as_ref(), Utc::now()).await?;
            println!(
                "{} paused at {} (by {})",
                p.id,
                opt(p.paused_at_position.as_ref()),
                opt(p.paused_by)
            );
        }
        PipelineCommand::Resume { id } => {
            let id: PipelineId = input("pipeline id", &id)?;
            let store = open_store(config).await?;
            let p = pipelines::resume(store.as_ref(), &id, Utc::now()).await?;
            println!(
                "{} {} at {}",
                p.id,
                p.state,
                opt(p.paused_at_position.as_ref().or(p.position.as_ref()))
            );
        }
        PipelineCommand::Remove { id } => {
            let id: PipelineId = input("pipeline id", &id)?;
            pipelines::remove(open_store(config).await?.as_ref(), &id).await?;
            println!("removed {id}");
        }
    }
    Ok(())
}

pub(super) fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub(super) fn time(t: Option<DateTime<Utc>>) -> String {
    opt(t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)))
}

fn print_connection(c: &Connection, pipelines: &[String]) {
    let lines = [
        ("id", c.id.to_string()),
        ("name", c.name.clone()),
        ("provider", c.provider.to_string()),
        ("owner", c.owner.to_string()),
        ("account", opt(c.account.as_ref())),
        ("status", c.status.to_string()),
        ("reason", opt(c.reason.as_ref())),
        ("since", time(Some(c.since))),
        (
            "scopes",
            if c.scopes.is_empty() {
                "-".into()
            } else {
                c.scopes.join(" ")
            },
        ),
        (
            "refresh token",
            if c.has_refresh_token {
                "yes".into()
            } else {
                "no (probe only)".into()
            },
        ),
        ("access token expires", time(c.access_expires_at)),
        ("refresh token expires", time(c.refresh_expires_at)),
        ("last check", time(c.last_check_at)),
        ("next check", time(Some(c.next_check_at))),
        (
            "pipelines",
            if pipelines.is_empty() {
                "-".into()
            } else {
                pipelines.join(", ")
            },
        ),
    ];
    for (k, v) in lines {
        println!("{:<24}{v}", format!("{k}:"));
    }
}

fn print_pipeline(p: &Pipeline) {
    let lines = [
        ("id", p.id.to_string()),
        ("name", p.name.clone()),
        ("state", p.state.to_string()),
        ("position", opt(p.position.as_ref())),
        ("position reported", time(p.position_updated_at)),
        ("paused at position", opt(p.paused_at_position.as_ref())),
        ("paused at", time(p.paused_at)),
        ("paused by", opt(p.paused_by)),
        ("pause reason", opt(p.pause_reason.as_ref())),
        (
            "connections",
            p.connections
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    for (k, v) in lines {
        println!("{:<20}{v}", format!("{k}:"));
    }
}

async fn status(config: &Config, json: bool) -> Result<(), CliError> {
    let store = open_store(config).await?;
    let connections = store.connections().await?;
    let pipelines = store.pipelines().await?;
    if json {
        let report = crate::status::StatusReport::new(connections, pipelines, Utc::now());
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        println!("{text}");
        return Ok(());
    }
    let mut t = Table::new(&[
        "CONNECTION",
        "NAME",
        "PROVIDER",
        "OWNER",
        "STATUS",
        "REASON",
        "SINCE",
        "LAST CHECK",
        "NEXT CHECK",
    ]);
    for c in &connections {
        t.row(vec![
            c.id.to_string(),
            c.name.clone(),
            c.provider.to_string(),
            c.owner.to_string(),
            match &c.set_aside {
                Some(_) => "set aside".to_owned(),
                None => c.status.to_string(),
            },
            opt(c.set_aside.as_ref().or(c.reason.as_ref())),
            time(Some(c.since)),
            time(c.last_check_at),
            time(Some(c.next_check_at)),
        ]);
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(&[
        "PIPELINE",
        "NAME",
        "STATE",
        "POSITION",
        "PAUSED AT POSITION",
    ]);
    for p in &pipelines {
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.state.to_string(),
            opt(p.position.as_ref()),
            opt(p.paused_at_position.as_ref()),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}
