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
    if stats.checked > 0
        && let Some(split) = cpu_by_thread()
    {
        // Where a check's CPU went, by the threads that spent it: the SQLite writer is the
        // database's share, the runtime's workers the rest (HTTP, crypto, classification).
        let per_check: Vec<String> = split
            .iter()
            .map(|(name, secs)| format!("{name} {:.0} µs", secs * 1e6 / stats.checked as f64))
            .collect();
        println!("CPU per check by thread: {}", per_check.join(", "));
    }
    Ok(())
}

/// CPU seconds (user + system) spent so far by this process's live threads, summed by name.
fn cpu_by_thread() -> Option<Vec<(String, f64)>> {
    // SAFETY: sysconf(3) with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    let mut by_name = std::collections::BTreeMap::<String, f64>::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid …": utime and stime are the 12th and 13th fields after comm.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("?", |(_, n)| n).to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let used: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        *by_name.entry(name).or_default() += used / ticks as f64;
    }
    let mut split: Vec<(String, f64)> = by_name.into_iter().filter(|(_, s)| *s > 0.0).collect();
    split.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(split)
}
