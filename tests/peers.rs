//! The harness itself: each real peer starts and answers as the later scenarios need it to.

use std::time::Duration;

use crate::helpers::TestEnv;
use crate::helpers::peers::{OidcServer, SmtpServer, postgres_database};

#[tokio::test]
async fn oidc_provider_issues_a_rotating_grant_that_credwatch_stores() {
    let oidc = OidcServer::spawn(serde_json::json!({})).await;
    let tokens = oidc.grant("user-7").await;
    let parsed: serde_json::Value = serde_json::from_str(&tokens).unwrap();
    let refresh = parsed["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    let env = TestEnv::with_providers(&[("acme", &oidc.url("/token"))]);
    let id = env.add_connection("ada@example.com", &tokens).await;
    let show = env.ok(&["connection", "show", &id]).await;
    assert!(
        show.contains("account:                user-7"),
        "account from the id_token: {show}"
    );

    // Rotation with reuse detection, as the health-check scenarios rely on.
    let refresh_with = |token: String| {
        let url = oidc.url("/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("credwatch", Some("credwatch-secret"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let first = refresh_with(refresh.clone()).await;
    assert!(first.status().is_success());
    let rotated: serde_json::Value = first.json().await.unwrap();
    assert_ne!(
        rotated["refresh_token"].as_str().unwrap(),
        refresh,
        "the refresh token rotates"
    );
    let reused = refresh_with(refresh).await;
    assert_eq!(reused.status().as_u16(), 400);
    assert_eq!(
        reused.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn aiosmtpd_accepts_mail_into_its_maildir() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let smtp = SmtpServer::spawn().await;
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port)
        .build();
    let message = Message::builder()
        .from("credwatch <credwatch@localhost>".parse().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject("harness check")
        .body("hello".to_owned())
        .unwrap();
    mailer.send(message).await.expect("send through aiosmtpd");
    crate::helpers::wait_until(
        "the message in the Maildir",
        Duration::from_secs(10),
        || async { !smtp.messages().is_empty() },
    )
    .await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("Subject: harness check"));
}

#[tokio::test]
async fn a_throwaway_postgres_gives_each_test_its_own_database() {
    let (a, b) = (postgres_database().await, postgres_database().await);
    assert_ne!(a, b);
    let pool = sqlx::PgPool::connect(&a).await.expect("connect");
    sqlx::query("CREATE TABLE t (x INT)")
        .execute(&pool)
        .await
        .unwrap();
    let other = sqlx::PgPool::connect(&b).await.expect("connect");
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 't'")
            .fetch_one(&other)
            .await
            .unwrap();
    assert_eq!(tables, 0, "databases are isolated");
}
