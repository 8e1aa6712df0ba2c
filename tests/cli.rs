//! Connections and pipelines from the command line; bad input is refused and writes nothing.

use crate::helpers::TestEnv;

const TOKENS: &str = r#"{"access_token":"at-1","refresh_token":"rt-1","expires_in":3600,"scope":"openid offline_access"}"#;

#[tokio::test]
async fn connections_and_pipelines_round_trip_through_status_json() {
    let env = TestEnv::new();
    let c1 = env.add_connection("ada@example.com", TOKENS).await;
    let c2 = env
        .add_connection(
            "bob@example.com",
            r#"{"access_token":"long-lived","expires_in":5184000}"#,
        )
        .await;
    let p = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "CRM to warehouse",
            "--connection",
            &c1,
            "--connection",
            &c2,
            "--position",
            "cursor=17",
        ])
        .await;
    assert!(p.starts_with("pipe_"), "{p}");
    env.ok(&["pipeline", "position", &p, "2026-11-01T00:00:00Z|42"])
        .await;

    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["version"], 1);
    let conns = status["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0]["id"], c1.as_str());
    assert_eq!(conns[0]["provider"], "acme");
    assert_eq!(conns[0]["owner"], "ada@example.com");
    assert_eq!(conns[0]["status"], "healthy");
    assert!(conns[0]["reason"].is_null());
    for key in ["since", "last_check", "next_check", "name", "account"] {
        assert!(
            conns[0].get(key).is_some(),
            "status --json lacks connections[].{key}"
        );
    }
    let pipes = status["pipelines"].as_array().unwrap();
    assert_eq!(pipes.len(), 1);
    assert_eq!(pipes[0]["id"], p.as_str());
    assert_eq!(pipes[0]["state"], "running");
    assert_eq!(pipes[0]["position"], "2026-11-01T00:00:00Z|42");
    assert!(pipes[0]["paused_at_position"].is_null());
    let mut linked: Vec<&str> = pipes[0]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    linked.sort();
    let mut expected = vec![c1.as_str(), c2.as_str()];
    expected.sort();
    assert_eq!(linked, expected);

    let show = env.ok(&["connection", "show", &c2]).await;
    assert!(
        show.contains("refresh token:          no (probe only)"),
        "{show}"
    );
    let list = env.ok(&["pipeline", "list"]).await;
    assert!(
        list.contains(&p) && list.contains("CRM to warehouse"),
        "{list}"
    );

    // Order matters: a used connection cannot go, a removed pipeline frees it.
    env.ok(&["pipeline", "remove", &p]).await;
    env.ok(&["connection", "remove", &c1]).await;
    let status: serde_json::Value =
        serde_json::from_str(&env.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["connections"].as_array().unwrap().len(), 1);
    assert_eq!(status["pipelines"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_account_is_the_id_token_subject_then_a_verified_email_never_a_guess() {
    use base64::Engine;
    let env = TestEnv::new();
    let tokens_with = |claims: &[u8]| {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        format!(r#"{{"access_token":"a","id_token":"x.{claims}.y"}}"#)
    };
    let account_of = |claims: &'static [u8]| {
        let env = &env;
        let tokens = tokens_with(claims);
        async move {
            let id = env.add_connection("ada@example.com", &tokens).await;
            let show = env.ok(&["connection", "show", &id]).await;
            show.lines()
                .find(|l| l.starts_with("account:"))
                .map(|l| l[8..].trim().to_owned())
        }
    };
    let both = account_of(br#"{"sub":"u-1","email":"ada@corp.example"}"#).await;
    assert_eq!(both.as_deref(), Some("u-1"));
    let email = account_of(br#"{"email":"ada@corp.example","email_verified":true}"#).await;
    assert_eq!(email.as_deref(), Some("ada@corp.example"));
    // An unverified address names nobody, and a name that could disguise itself is no name.
    let add = [
        "connection",
        "add",
        "--provider",
        "acme",
        "--name",
        "N",
        "--owner",
        "ada@example.com",
        "--tokens",
        "-",
    ];
    for claims in [
        &br#"{"email":"ada@corp.example"}"#[..],
        br#"{"email":"ada@corp.example","email_verified":false}"#,
        br#"{"sub":"admin\u202emoc.elgoog"}"#,
        br#"{"sub":"u-1\r\nX-Injected: 1"}"#,
    ] {
        refused(&env, &add, &tokens_with(claims), "cannot be known").await;
    }
    // Nor is an account given by hand.
    let mut with_account = add.to_vec();
    with_account.extend(["--account", "u-1\u{1b}[2J"]);
    refused(&env, &with_account, &tokens_with(b"{}"), "--account").await;
    // The operator may insist, explicitly.
    let mut anyway = add.to_vec();
    anyway.push("--allow-unknown-account");
    let out = env
        .cli_with_stdin(&anyway, tokens_with(b"{}").as_bytes())
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command that must fail with one clear line mentioning `expect`, leaving the database as it was.
async fn refused(env: &TestEnv, args: &[&str], stdin: &str, expect: &str) {
    let before = env.db_snapshot().await;
    let out = env.cli_with_stdin(args, stdin.as_bytes()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(65),
        "{args:?} should fail with 65: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?} should say one line: {stderr}"
    );
    assert!(
        stderr.contains(expect),
        "{args:?}: expected {expect:?} in {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        env.db_snapshot().await,
        before,
        "{args:?} changed the database"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let env = TestEnv::new();
    let conn = env.add_connection("ada@example.com", TOKENS).await;
    let pipe = env
        .ok(&[
            "pipeline",
            "add",
            "--name",
            "P",
            "--connection",
            &conn,
            "--position",
            "1",
        ])
        .await;
    let gone = env
        .ok(&["pipeline", "add", "--name", "Gone", "--connection", &conn])
        .await;
    env.ok(&["pipeline", "remove", &gone]).await;
    let add = |provider: &'static str, owner: &'static str| {
        [
            "connection",
            "add",
            "--provider",
            provider,
            "--name",
            "N",
            "--owner",
            owner,
            "--tokens",
            "-",
        ]
    };

    refused(
        &env,
        &add("nope", "ada@example.com"),
        TOKENS,
        "no provider \"nope\"",
    )
    .await;
    refused(&env, &add("acme", "ada-at-example.com"), TOKENS, "--owner").await;
    refused(
        &env,
        &add("acme", "ada@example.com"),
        "{\"access_token\": ",
        "not valid JSON",
    )
    .await;
    refused(
        &env,
        &add("acme", "ada@example.com"),
        r#"{"refresh_token":"rt"}"#,
        "access_token",
    )
    .await;
    refused(
        &env,
        &add("acme", "ada@example.com"),
        "<html>502 Bad Gateway</html>",
        "not valid JSON",
    )
    .await;
    refused(
        &env,
        &[
            "connection",
            "add",
            "--provider",
            "acme",
            "--name",
            "N",
            "--owner",
            "a@b.c",
            "--tokens",
            "/nonexistent/tokens.json",
        ],
        "",
        "cannot read",
    )
    .await;
    refused(
        &env,
        &[
            "connection",
            "add",
            "--provider",
            "acme",
            "--name",
            " ",
            "--owner",
            "a@b.c",
            "--tokens",
            "-",
        ],
        TOKENS,
        "--name",
    )
    .await;
    refused(
        &env,
        &["connection", "show", "conn_22222222222222"],
        "",
        "no connection with id conn_22222222222222",
    )
    .await;
    refused(
        &env,
        &["connection", "show", "42"],
        "",
        "not a connection id",
    )
    .await;
    refused(
        &env,
        &["connection", "remove", "conn_22222222222222"],
        "",
        "no connection",
    )
    .await;
    refused(
        &env,
        &["connection", "remove", &conn],
        "",
        &format!("used by pipeline(s) {pipe}"),
    )
    .await;
    refused(
        &env,
        &[
            "pipeline",
            "add",
            "--name",
            "P2",
            "--connection",
            &conn,
            "--connection",
            "conn_22222222222222",
        ],
        "",
        "no connection with id conn_22222222222222",
    )
    .await;
    refused(
        &env,
        &[
            "pipeline",
            "add",
            "--name",
            "P2",
            "--connection",
            &conn,
            "--position",
            "",
        ],
        "",
        "position",
    )
    .await;
    refused(
        &env,
        &["pipeline", "position", &gone, "2"],
        "",
        &format!("no pipeline with id {gone}"),
    )
    .await;
    refused(
        &env,
        &["pipeline", "position", &pipe, "line\nbreak"],
        "",
        "control characters",
    )
    .await;
    refused(&env, &["pipeline", "remove", &gone], "", "no pipeline").await;
}

#[tokio::test]
async fn tokens_are_never_echoed_by_any_command() {
    let env = TestEnv::new();
    let id = env
        .add_connection(
            "ada@example.com",
            r#"{"access_token":"AT-canary-1","refresh_token":"RT-canary-2"}"#,
        )
        .await;
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["connection", "list"],
        vec!["connection", "show", &id],
    ] {
        let out = env.cli(&args).await;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("canary"), "{args:?} showed a token: {all}");
    }
}

#[tokio::test]
async fn a_configured_refresh_token_lifetime_dates_a_new_connection() {
    let env = crate::helpers::TestEnv::with_config(
        "\n[providers.acme]\ntoken_url = \"http://127.0.0.1:9/token\"\n\
         authorize_url = \"http://127.0.0.1:9/authorize\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         refresh_token_lifetime = \"365d\"\n",
    );
    let id = env
        .add_connection(
            "ada@example.com",
            r#"{"access_token":"at","refresh_token":"rt"}"#,
        )
        .await;
    let show = env.ok(&["connection", "show", &id]).await;
    let line = show
        .lines()
        .find(|l| l.starts_with("refresh token expires:"))
        .unwrap();
    let year = (chrono::Utc::now() + chrono::TimeDelta::days(365))
        .format("%Y-%m-%d")
        .to_string();
    assert!(line.contains(&year), "{line}");
}

#[test]
fn the_packaged_completions_and_man_page_are_those_of_this_command_line() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    for (args, file) in [
        (&["completions", "bash"][..], "completions/credwatch.bash"),
        (&["completions", "zsh"][..], "completions/_credwatch"),
        (&["completions", "fish"][..], "completions/credwatch.fish"),
        (&["manpage"][..], "man/man1/credwatch.1"),
    ] {
        let out = std::process::Command::new(crate::helpers::BIN)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let packaged = std::fs::read(root.join(file)).unwrap();
        assert!(
            out.stdout == packaged,
            "packaging/{file} is out of date: run packaging/generate"
        );
    }
    let bash = std::fs::read_to_string(root.join("completions/credwatch.bash")).unwrap();
    assert!(bash.contains("dev-provider") && bash.contains("reauth-link"));
}
