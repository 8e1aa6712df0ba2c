//! `credwatch config check`: every problem named with its file and key, exit 78.

use crate::helpers::{BIN, TestEnv};

async fn check(env: &TestEnv, vars: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(&env.config)
        .args(["config", "check"]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run config check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_good_config_passes() {
    let env = TestEnv::new();
    let out = env.cli(&["config", "check"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 provider"));
}

#[tokio::test]
async fn every_problem_is_reported_with_file_and_key() {
    let env = TestEnv::with_config(
        "\n[http]\nlisten = \"not an address\"\npublic_base_url = \"ftp://example.com\"\n\
         [operator]\nemail = \"nobody\"\n\
         [mail]\nfrom = \"<<>>\"\n\
         [surprise]\nx = 1\n\
         [providers.acme]\ntoken_url = \"/relative\"\nauthorize_url = \"http://127.0.0.1/a\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\nclient_secret_file = \"also\"\nreuse_grace = \"a while\"\ncolour = \"blue\"\n\
         [providers.other]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\nclient_id = \"c\"\n",
    );
    // The base config already has [mail] and [schedule]; a duplicate table is a TOML error, so
    // rewrite them in place instead.
    let text = std::fs::read_to_string(&env.config).unwrap().replacen(
        "[mail]\ntransport = \"file\"\ndir = \"mail\"\n",
        "",
        1,
    );
    let text = text.replace("sweep = \"0 * * * * *\"", "sweep = \"every monday\"");
    std::fs::write(&env.config, text).unwrap();

    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78, "{stderr}");
    let file = env.config.display().to_string();
    for key in [
        "schedule.sweep",
        "http.listen",
        "http.public_base_url",
        "operator.email",
        "mail.from",
        "surprise",
        "providers.acme.colour",
        "providers.other.client_secret",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("credwatch: {file}: {key}: "))),
            "no line for {key} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn problems_within_one_provider_are_all_reported() {
    let env = TestEnv::with_config(
        "\n[providers.acme]\ntoken_url = \"/relative\"\nclient_secret = \"s\"\nclient_secret_file = \"x\"\nreuse_grace = \"a while\"\nclient_auth = \"magic\"\ntoken_request = \"xml\"\ntoken_params = { grant_type = \"password\" }\ntoken_headers = { Authorization = \"x\" }\n",
    );
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    for key in [
        "token_url",
        "authorize_url",
        "client_id",
        "client_secret_file",
        "reuse_grace",
        "client_auth",
        "token_request",
        "token_params.grant_type",
        "token_headers.Authorization",
    ] {
        assert!(
            stderr.contains(&format!(": providers.acme.{key}: ")),
            "no line for {key} in:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn an_environment_override_is_applied_and_named_when_bad() {
    let env = TestEnv::new();
    let (code, stderr) = check(&env, &[("CREDWATCH__SCHEDULE__BATCH_SIZE", "0")]).await;
    assert_eq!(code, 78);
    assert!(stderr.contains("schedule.batch_size: must be between 1 and 10000 (set by environment variable CREDWATCH__SCHEDULE__BATCH_SIZE)"), "{stderr}");
    let (code, stderr) = check(&env, &[("CREDWATCH__SCHEDULE__BATCH_SIZE", "50")]).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn key_problems_are_config_errors() {
    let env = TestEnv::new();
    std::fs::write(env.path("credwatch.key"), "too short\n").unwrap();
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains("encryption.key_file: encryption key file")
            && stderr.contains("32-byte key"),
        "{stderr}"
    );
    std::fs::remove_file(env.path("credwatch.key")).unwrap();
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains("encryption.key_file: cannot read encryption key file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn secrets_come_from_files_including_systemd_credentials() {
    let env = TestEnv::with_config(
        "\n[providers.acme]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\nclient_id = \"c\"\n\
         client_secret_file = \"$CREDENTIALS_DIRECTORY/acme-secret\"\n",
    );
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains(
            "providers.acme.client_secret_file: refers to $CREDENTIALS_DIRECTORY, which is not set"
        ),
        "{stderr}"
    );
    let creds = env.path("creds");
    std::fs::create_dir(&creds).unwrap();
    let dir = creds.to_str().unwrap();
    let (code, stderr) = check(&env, &[("CREDENTIALS_DIRECTORY", dir)]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains("providers.acme.client_secret_file: cannot read"),
        "{stderr}"
    );
    std::fs::write(creds.join("acme-secret"), "s3cret\n").unwrap();
    let (code, stderr) = check(&env, &[("CREDENTIALS_DIRECTORY", dir)]).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn syntax_errors_and_missing_files_name_the_file() {
    let env = TestEnv::new();
    std::fs::write(&env.config, "[database\nurl = 1\n").unwrap();
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains(&format!("{}: not valid TOML", env.config.display())),
        "{stderr}"
    );
    std::fs::remove_file(&env.config).unwrap();
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78);
    assert!(
        stderr.contains(&format!("cannot read config file {}", env.config.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_shipped_config_lacks_only_its_key() {
    // config/credwatch.toml is what the package installs: only its key, which the package
    // generates on install, does not exist here; every other value must be valid.
    let out = tokio::process::Command::new(BIN)
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/credwatch.toml"),
            "config",
            "check",
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78));
    let keys: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split(": ").nth(2))
        .collect();
    assert_eq!(keys, ["encryption.key_file"], "{stderr}");
}

#[tokio::test]
async fn secrets_in_the_config_never_reach_debug_output() {
    let env = TestEnv::with_config(
        "\n[providers.acme]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\nclient_id = \"c\"\n\
         client_secret = \"client-secret-canary\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nusername = \"u\"\npassword = \"smtp-password-canary\"\n",
    );
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[database]\nurl = \"sqlite://state/credwatch.db\"",
        "[database]\nurl = \"postgres://u:db-password-canary@127.0.0.1/x\"",
    );
    std::fs::write(
        &env.config,
        text.replace("transport = \"file\"", "transport = \"smtp\""),
    )
    .unwrap();
    let config = credwatch::config::Config::load(&env.config).expect("valid config");
    let shown = format!("{config:?}");
    assert!(
        shown.contains("client_id"),
        "Debug shows the config: {shown}"
    );
    assert!(
        !shown.contains("canary"),
        "a secret leaked into Debug output: {shown}"
    );
}

#[tokio::test]
async fn check_limits_and_classification_rules_are_checked_by_key() {
    let env = TestEnv::with_config(
        "\n[schedule]\nbroken_recheck = \"5m\"\nbackoff_max = \"soon\"\nhistory_retention = \"10m\"\n\
         [limits]\nrequest_timeout = \"2m\"\nlease = \"3m\"\n\
         [providers.acme]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\nkind = \"myspace\"\nmax_concurrent = 0\n\
         [providers.beta]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\n\
         rules = [{ error = \"x\", category = \"doomed\" }]\n\
         [providers.gamma]\ntoken_url = \"http://127.0.0.1/t\"\nauthorize_url = \"http://127.0.0.1/a\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\nkind = \"microsoft\"\n\
         rules = [{ status = \"4xx\", code = 90055, category = \"transient\" }]\n",
    );
    let (code, stderr) = check(&env, &[]).await;
    assert_eq!(code, 78, "{stderr}");
    for key in [
        "schedule.broken_recheck",
        "schedule.backoff_max",
        "schedule.history_retention",
        "limits.lease",
        "providers.acme.kind",
        "providers.acme.max_concurrent",
        "providers.beta.rules[0].category",
    ] {
        assert!(
            stderr.contains(&format!("{}: {key}: ", env.config.display())),
            "{key} not reported in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("providers.gamma"),
        "gamma is valid:\n{stderr}"
    );
}
