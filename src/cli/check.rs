//! `credwatch check`: the same checks the daemon runs, now, with each outcome printed.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::CliError;
use super::commands::{input, open_store, time};
use crate::check::{Checker, Report, ReportOutcome, instance_id};
use crate::config::Config;
use crate::domain::ConnectionId;

const PAGE: u32 = 500;

pub async fn check(config: &Config, all: bool, ids: &[String], json: bool) -> Result<(), CliError> {
    let ids = ids
        .iter()
        .map(|id| input::<ConnectionId>("connection id", id))
        .collect::<Result<Vec<_>, _>>()?;
    let store = open_store(config).await?;
    // Every id must exist before any is checked: a typo checks nothing.
    for id in &ids {
        store.connection(id).await?;
    }
    let checker = Arc::new(Checker::new(config, store.clone(), instance_id("cli"))?);
    checker.refresh_holds().await?;
    let cancel = CancellationToken::new();
    let on_interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let mut pending: VecDeque<ConnectionId> = ids.into();
    let mut after: Option<ConnectionId> = None;
    let mut more = all;
    let mut running = JoinSet::new();
    let limit = config.limits.max_concurrent_checks as usize;
    let mut result = Ok(());
    loop {
        if more && pending.len() < limit {
            let page = store.connection_ids(after.as_ref(), PAGE).await?;
            more = page.len() == PAGE as usize;
            after = page.last().cloned().or(after);
            pending.extend(page);
        }
        while running.len() < limit
            && !cancel.is_cancelled()
            && let Some(id) = pending.pop_front()
        {
            let checker = checker.clone();
            let cancel = cancel.clone();
            running.spawn(async move { checker.check_now(&id, &cancel).await });
        }
        match running.join_next().await {
            Some(Ok(Ok(report))) => print(&report, json),
            Some(Ok(Err(e))) => {
                eprintln!("credwatch: {e}");
                result = Err(e.into());
            }
            Some(Err(e)) => {
                // A panic in a check is a bug; it must not pass for a check that ran.
                let e = format!("a check failed unexpectedly: {e}");
                eprintln!("credwatch: {e}");
                result = Err(CliError::Failed(e));
            }
            None if more && !cancel.is_cancelled() => {}
            None => break,
        }
    }
    on_interrupt.abort();
    result
}

fn print(r: &Report, json: bool) {
    if json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("credwatch: cannot encode a report: {e}"),
        }
        return;
    }
    match &r.outcome {
        ReportOutcome::Checked {
            category,
            detail,
            latency_ms,
            before,
            after,
            stale,
            next_check_at,
            paused,
            resumed,
            ..
        } => {
            let change = if before != after {
                format!(", was {before}")
            } else {
                String::new()
            };
            let stale = if *stale {
                " (about replaced tokens: not applied)"
            } else {
                ""
            };
            let mut pipelines = String::new();
            for (what, ids) in [("paused", paused), ("resumed", resumed)] {
                if !ids.is_empty() {
                    let ids: Vec<&str> = ids.iter().map(|p| p.as_str()).collect();
                    pipelines.push_str(&format!("; {what} {}", ids.join(", ")));
                }
            }
            println!(
                "{}  {:<8}  {category}: {detail} ({latency_ms} ms{change}){stale}{pipelines}; next check {}",
                r.connection,
                after.as_str(),
                time(Some(*next_check_at))
            );
        }
        ReportOutcome::Skipped { why } => {
            println!("{}  skipped   {why}", r.connection);
        }
    }
}

/// `credwatch sweep`: one sweep through the scheduler's own code path.
pub async fn sweep(config: &Config) -> Result<(), CliError> {
    crate::scheduler::parse_cron(&config.schedule.sweep)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let store = open_store(config).await?;
    let checker = Arc::new(Checker::new(config, store, instance_id("sweep"))?);
    let cancel = CancellationToken::new();
    let on_interrupt = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let started = std::time::Instant::now();
    let stats = crate::scheduler::sweep(&checker, &cancel, true).await;
    let elapsed = started.elapsed();
    on_interrupt.abort();
    let categories: Vec<String> = stats
        .by_category
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let commits = &stats.rotation_commits;
    let committed = match (commits.quantile(0.5), commits.quantile(0.99)) {
        (Some(p50), Some(p99)) => {
            format!("; rotated tokens committed p50 {p50} ms, p99 {p99} ms after the answer")
        }
        _ => String::new(),
    };
    println!(
        "checked {} ({}), skipped {}, failed {} in {:.3}s{committed}",
        stats.checked,
        if categories.is_empty() {
            "none due".to_owned()
        } else {
            categories.join(", ")
        },
        stats.skipped,
        stats.failed,
        elapsed.as_secs_f64()
    );
    Ok(())
}
