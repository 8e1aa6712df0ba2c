//! The alert rules and the Grafana dashboard under `monitoring/`: the rules pass `promtool check`
//! and their own `promtool test`, the dashboard's queries are valid PromQL, and every metric
//! either names is one a running daemon serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::helpers::{TestEnv, wait_until};

fn monitoring(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(path)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; tests/peers/setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every PromQL query of the dashboard, its Grafana variables given plain values.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(monitoring("grafana/credwatch.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a query");
            queries.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$provider", ".*"),
            );
        }
    }
    queries
}

/// The `credwatch_…` names a text mentions, without the suffixes the exposition adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("credwatch_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        names.insert(base.to_owned());
    }
    names
}

#[test]
fn the_alert_rules_pass_promtools_check_and_their_own_tests() {
    let dir = monitoring("prometheus");
    let checked = promtool(&["check", "rules", "credwatch.rules.yml"], &dir);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "credwatch.rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    // promtool has no query checker of its own: each query becomes a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.rules.yml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.rules.yml"], dir.path());
}

/// The names `src/metrics.rs` registers, prefixed as the registry prefixes them.
fn registered() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
            .unwrap();
    source
        .split("registry.register(")
        .skip(1)
        .filter_map(|call| call.split('"').nth(1))
        .map(|name| format!("credwatch_{name}"))
        .collect()
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_name_exists_and_a_fresh_daemon_serves_the_alerts_gauges()
 {
    let rules = std::fs::read_to_string(monitoring("prometheus/credwatch.rules.yml")).unwrap();
    let mut named = metric_names(&rules);
    named.extend(metric_names(&dashboard_queries().join("\n")));
    assert!(named.len() >= 15, "{named:?}");
    let registered = registered();
    let unknown: Vec<_> = named.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "no such metric: {unknown:?} (registered: {registered:?})"
    );

    // Families with labels appear once something happened; these must be there from the start,
    // or their alerts could not fire on a daemon that never got going.
    let env = TestEnv::new();
    let _daemon = env.spawn().await;
    let served = reqwest::get(format!("{}/metrics", env.api_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "credwatch_ready",
        "credwatch_last_sweep_timestamp_seconds",
        "credwatch_outbox_pending",
        "credwatch_outbox_failed",
    ] {
        assert!(
            served.lines().any(|l| l.starts_with(&format!("{family} "))),
            "{family} not served:\n{served}"
        );
    }
    assert!(served.contains("credwatch_ready 1"), "{served}");
    // The first sweep runs at start, and the gauge says when.
    let url = format!("{}/metrics", env.api_url());
    wait_until(
        "a stored sweep in the metrics",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            text.lines()
                .filter_map(|l| l.strip_prefix("credwatch_last_sweep_timestamp_seconds "))
                .any(|v| v.trim().parse::<i64>().is_ok_and(|t| t > 1_700_000_000))
        },
    )
    .await;
}
