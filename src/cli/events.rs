//! `credwatch events` and `credwatch webhooks`: the event log and its deliveries.

use chrono::Utc;

use super::commands::{open_store, opt, time};
use super::table::Table;
use super::*;
use crate::config::Config;

/// Events in the order they happened, one JSON object per line.
pub(super) async fn list(
    config: &Config,
    after: Option<String>,
    types: Vec<String>,
    limit: u32,
) -> Result<(), CliError> {
    let after = match after {
        None => 0,
        Some(id) => crate::events::seq_of(&id).ok_or_else(|| {
            CliError::Input(format!("--after: {id:?} is not an event id (evt_…)"))
        })?,
    };
    if let Some(t) = types
        .iter()
        .find(|t| !crate::events::TYPES.contains(&t.as_str()))
    {
        return Err(CliError::Input(format!(
            "--type: {t:?} is not one of: {}",
            crate::events::TYPES.join(", ")
        )));
    }
    let store = open_store(config).await?;
    for e in store
        .events_after(after, &types, limit.clamp(1, 10_000))
        .await?
    {
        let line = serde_json::to_string(&crate::events::Envelope::from(e))
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        println!("{line}");
    }
    Ok(())
}

pub(super) async fn webhooks(config: &Config, cmd: WebhooksCommand) -> Result<(), CliError> {
    let known = |name: &str| -> Result<Vec<String>, CliError> {
        match config.webhooks.iter().find(|w| w.name == name) {
            Some(w) => Ok(w.events.clone()),
            None => Err(CliError::Input(format!(
                "ENDPOINT: no [[webhooks]] named {name:?} in {}",
                config.path.display()
            ))),
        }
    };
    let now = Utc::now();
    match cmd {
        WebhooksCommand::Status => {
            let store = open_store(config).await?;
            let mut t = Table::new(&[
                "ENDPOINT",
                "PENDING",
                "OLDEST",
                "DELIVERED",
                "FAILED",
                "FAILING SINCE",
                "LAST ERROR",
            ]);
            for e in store.endpoint_status().await? {
                let age = e.oldest_pending_at.map(|at| {
                    humantime::format_duration(std::time::Duration::from_secs(
                        (now - at).num_seconds().max(0) as u64,
                    ))
                    .to_string()
                });
                t.row(vec![
                    e.endpoint,
                    format!("{} pending", e.pending),
                    opt(age),
                    e.delivered.to_string(),
                    e.failed.to_string(),
                    time(e.failing_since),
                    opt(e.last_error),
                ]);
            }
            print!("{}", t.render());
        }
        WebhooksCommand::Retry { endpoint } => {
            known(&endpoint)?;
            let n = open_store(config)
                .await?
                .retry_endpoint(&endpoint, now)
                .await?;
            println!("{n} deliveries to {endpoint} are due now");
        }
        WebhooksCommand::Replay { endpoint, since } => {
            let types = known(&endpoint)?;
            let since = chrono::DateTime::parse_from_rfc3339(&since)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| {
                    humantime::parse_duration(&since)
                        .ok()
                        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                        .map(|d| now - d)
                        .ok_or(())
                })
                .map_err(|()| {
                    CliError::Input(format!(
                        "--since: {since:?} is neither an RFC 3339 time nor a duration such as 2h"
                    ))
                })?;
            let n = open_store(config)
                .await?
                .replay(&endpoint, &types, since, now)
                .await?;
            println!(
                "{n} events since {} will be sent to {endpoint} again",
                time(Some(since))
            );
        }
    }
    Ok(())
}
