//! New connections from connect links, through the real oidc-provider: the page, the sign-in,
//! the connection created with the account the grant names; and every way a link is refused
//! with nothing created.

use serde_json::{Value, json};

use crate::api::Platform;
use crate::helpers::Db;
use crate::reauth::{get, install, no_redirects, start, through_provider};

async fn invite(platform: &Platform, body: Value) -> String {
    let (status, link) = platform.call("POST", "/v1/connect-links", Some(body)).await;
    assert_eq!(status, 201, "{link}");
    link["url"].as_str().unwrap().to_owned()
}

async fn count(platform: &Platform) -> usize {
    let (_, page) = platform.call("GET", "/v1/connections", None).await;
    page["items"].as_array().unwrap().len()
}

crate::on_both_backends!(an_owner_connects_a_new_data_source_from_a_link);

async fn an_owner_connects_a_new_data_source_from_a_link(db: Db) {
    let (_oidc, env, base) = install(db, None, "").await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let link = invite(
        &platform,
        json!({"provider": "acme", "name": "Sales CRM", "owner": "ada@example.com",
            "account": "user-3", "external_id": "tenant-3/crm"}),
    )
    .await;
    assert!(link.starts_with(&format!("{base}/connect/")), "{link}");
    let (status, page) = get(&link).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Sales CRM") && page.contains("Acme CRM") && page.contains("user-3"),
        "{page}"
    );
    assert_eq!(count(&platform).await, 0, "a GET creates nothing");

    let authorize = start(&link).await;
    assert!(authorize.contains("login_hint=user-3"), "{authorize}");
    let callback = through_provider(&authorize, &base).await;
    let (status, done) = get(&callback).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Connected"), "{done}");
    let (_, found) = platform
        .call("GET", "/v1/connections?external_id=tenant-3/crm", None)
        .await;
    let c = &found["items"][0];
    assert_eq!(c["account"], "user-3", "{found}");
    assert_eq!(c["owner"], "ada@example.com");
    assert_eq!(c["status"], "healthy");
    let (_, feed) = platform
        .call("GET", "/v1/events?types=connection.created", None)
        .await;
    assert_eq!(feed["events"][0]["external_id"], "tenant-3/crm", "{feed}");

    // Single use: the same link again is stale, and creates nothing.
    let again = no_redirects().post(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);
    let (status, _) = get(&link).await;
    assert_eq!(status, 410);
    assert_eq!(count(&platform).await, 1);
}

#[tokio::test]
async fn a_tampered_expired_cancelled_or_wrong_account_link_creates_nothing() {
    let (_oidc, env, base) = install(Db::Sqlite, None, "").await;
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let body = |account: &str| json!({"provider": "acme", "name": "CRM", "owner": "ada@example.com", "account": account});

    let (status, _) = get(&format!("{base}/connect/not-a-token")).await;
    assert_eq!(status, 404, "tampered");

    let expired = invite(&platform, body("user-4")).await;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", env.db_path().display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE connect_links SET expires_at = 0")
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    assert_eq!(get(&expired).await.0, 410, "expired");
    assert_eq!(
        no_redirects().post(&expired).send().await.unwrap().status(),
        410
    );

    // The test provider refuses consent for the account named "deny".
    let cancelled = invite(&platform, body("deny")).await;
    let callback = through_provider(&start(&cancelled).await, &base).await;
    let (status, page) = get(&callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Nothing was connected"), "{page}");

    // Signed in as another account than the link names: refused, and the link still works.
    let wrong = invite(&platform, body("user-5")).await;
    let authorize = start(&wrong)
        .await
        .replace("login_hint=user-5", "login_hint=user-6");
    let (status, page) = get(&through_provider(&authorize, &base).await).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("different account"), "{page}");
    assert_eq!(count(&platform).await, 0, "nothing created");
    let (status, _) = get(&through_provider(&start(&wrong).await, &base).await).await;
    assert_eq!(status, 200, "the right account afterwards");
    assert_eq!(count(&platform).await, 1);

    // A provider that is not configured cannot be invited to.
    let (status, problem) = platform
        .call(
            "POST",
            "/v1/connect-links",
            Some(json!({"provider": "nope", "name": "X", "owner": "a@example.com"})),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "provider");
}

#[tokio::test]
async fn the_command_line_invites_too() {
    let (_oidc, env, base) = install(Db::Sqlite, None, "").await;
    let out = env
        .ok(&[
            "connection",
            "invite",
            "--provider",
            "acme",
            "--name",
            "CRM",
            "--owner",
            "ada@example.com",
        ])
        .await;
    assert!(out.trim().starts_with(&format!("{base}/connect/")), "{out}");
    let refused = env
        .cli(&[
            "connection",
            "invite",
            "--provider",
            "nope",
            "--name",
            "CRM",
            "--owner",
            "ada@example.com",
        ])
        .await;
    assert_eq!(refused.status.code(), Some(65));
}
