//! The owner's pages in a real browser (headless Chromium through WebDriver): an invitation
//! e-mailed, its link opened, the real oidc-provider's own sign-in and consent clicked through;
//! and a revoked API key replaced on the re-entry form, a wrong one first. Each page is saved
//! as a screenshot under `target/screenshots/`.

use std::time::Duration;

use serde_json::json;

use crate::api::Platform;
use crate::credentials::KeyedProvider;
use crate::helpers::browser::Browser;
use crate::helpers::peers::{SmtpServer, decode_quoted_printable};
use crate::helpers::{Db, TestEnv, link_in, read_dir_names, wait_until};
use crate::reauth::install_with;

/// `[http]` gets the platform's name and support address (as an operator would add them).
fn brand(env: &TestEnv) {
    let config = std::fs::read_to_string(&env.config).unwrap();
    let config = config.replacen(
        "[http]\n",
        "[http]\nbrand_name = \"Northwind Data\"\nsupport_email = \"help@northwind.example\"\n",
        1,
    );
    std::fs::write(&env.config, config).unwrap();
}

#[tokio::test]
async fn an_owner_connects_from_the_emailed_invitation_through_the_providers_consent() {
    let smtp = SmtpServer::spawn().await;
    let (_oidc, env, base) = install_with(Db::Sqlite, Some(smtp.port), "", true).await;
    brand(&env);
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);

    let (status, queued) = platform
        .call(
            "POST",
            "/v1/connect-links",
            Some(
                json!({"provider": "acme", "name": "Sales CRM", "owner": "ada@example.com",
                "account": "user-3", "external_id": "tenant-3/crm", "email": true}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["emailed_to"], "ada@example.com");
    assert!(
        queued.get("url").is_none(),
        "the link is only in the e-mail"
    );
    wait_until("the invitation", Duration::from_secs(30), || async {
        !smtp.messages().is_empty()
    })
    .await;
    let message = smtp.messages().remove(0);
    assert!(
        message.contains("Subject: Connect your Acme CRM account to Northwind Data"),
        "{message}"
    );
    assert!(message.contains("To: ada@example.com"), "{message}");
    let link = link_in(&message, &format!("{base}/connect/"));

    let mut browser = Browser::start("connect_from_an_emailed_invitation").await;
    browser.open(&link).await;
    let page = browser.page_with_heading("Connect Sales CRM").await;
    assert!(
        page.contains("Acme CRM") && page.contains("user-3") && page.contains("Northwind Data"),
        "{page}"
    );
    assert!(page.contains("help@northwind.example"), "{page}");
    browser.screenshot("connect-page").await;
    browser.assert_accessible_and_fits_a_phone().await;
    browser.desktop().await;
    browser.click("button[type=submit]").await;

    // oidc-provider's own pages: sign in, then approve.
    browser.type_into("input[name=login]", "user-3").await;
    browser
        .type_into("input[name=password]", "any password")
        .await;
    browser.screenshot("provider-sign-in").await;
    browser.click("button[type=submit]").await;
    browser.find("input[name=prompt][value=consent]").await;
    browser.screenshot("provider-consent").await;
    browser.click("button[type=submit]").await;

    let done = browser.page_with_heading("Connected").await;
    assert!(
        done.contains("Sales CRM is connected to Acme CRM"),
        "{done}"
    );
    browser.screenshot("connected").await;
    let (_, found) = platform
        .call("GET", "/v1/connections?external_id=tenant-3/crm", None)
        .await;
    let c = &found["items"][0];
    assert_eq!(c["account"], "user-3", "{found}");
    assert_eq!(c["status"], "healthy");

    // The link was for one use: opened again, it says so.
    browser.open(&link).await;
    browser.page_with_heading("This link has expired").await;
    browser.screenshot("used-link").await;
    browser.close().await;
}

#[tokio::test]
async fn an_owner_replaces_a_revoked_api_key_on_the_form_a_wrong_one_first() {
    let provider = KeyedProvider::spawn("key-0123456789-good").await;
    let env = TestEnv::with_config(&format!(
        "[notices]\ndigest_window = \"1s\"\n{}\n\
         [providers.keyed.fields.api_key]\nlabel = \"Keyed CRM API token\"\n\
         help = \"In Keyed CRM: Settings, then API, then Tokens.\"\n",
        provider.config()
    ));
    let _daemon = env.spawn().await;
    let platform = Platform::new(&env);
    let (status, c) = platform
        .call(
            "POST",
            "/v1/connections",
            Some(
                json!({"provider": "keyed", "name": "CRM", "owner": "ada@example.com",
                "credentials": {"api_key": "key-0123456789-good"}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    let (_, pipeline) = platform
        .call(
            "POST",
            "/v1/pipelines",
            Some(json!({"name": "Orders", "connections": [id], "position": "page=4"})),
        )
        .await;
    let pipeline = pipeline["id"].as_str().unwrap().to_owned();

    *provider.valid.lock().unwrap() = "key-9876543210-new".into();
    let (_, report) = platform
        .call("POST", &format!("/v1/connections/{id}/check"), None)
        .await;
    assert_eq!(report["after"], "broken", "{report}");
    wait_until("the owner's e-mail", Duration::from_secs(30), || async {
        !read_dir_names(&env.path("mail")).is_empty()
    })
    .await;
    let mail = read_dir_names(&env.path("mail"));
    let message =
        decode_quoted_printable(&std::fs::read_to_string(env.path("mail").join(&mail[0])).unwrap());
    assert!(
        message.contains("enter the new API key"),
        "a key's owner is not told to sign in: {message}"
    );
    let link = link_in(&message, &format!("{}/reauthorize/", env.base_url()));
    let stored = env
        .value(&format!(
            "SELECT hex(access_token) FROM connections WHERE id = '{id}'"
        ))
        .await;

    let mut browser = Browser::start("replace_a_revoked_api_key").await;
    browser.open(&link).await;
    let page = browser.page_with_heading("New API key for CRM").await;
    assert!(
        page.contains("Keyed CRM API token")
            && page.contains("In Keyed CRM: Settings, then API, then Tokens."),
        "the provider's words from the config: {page}"
    );
    let input = browser.find("input[name=api_key]").await;
    assert_eq!(
        input.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    browser.screenshot("form").await;
    browser.assert_accessible_and_fits_a_phone().await;
    browser.screenshot("form-on-a-phone").await;
    browser.desktop().await;

    browser
        .type_into("input[name=api_key]", "key-0000000000-wrong")
        .await;
    browser.click("button[type=submit]").await;
    let page = browser.page_with_heading("New API key for CRM").await;
    assert!(
        page.contains("Keyed CRM did not accept this API key")
            && page.contains("this API key was revoked"),
        "the provider's answer, in words: {page}"
    );
    assert!(!page.contains("key-0000000000-wrong"), "{page}");
    browser.screenshot("wrong-key").await;
    let (_, shown) = platform
        .call("GET", &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(shown["status"], "broken", "nothing stored: {shown}");
    assert_eq!(
        env.value(&format!(
            "SELECT hex(access_token) FROM connections WHERE id = '{id}'"
        ))
        .await,
        stored
    );

    browser
        .type_into("input[name=api_key]", "key-9876543210-new")
        .await;
    browser.click("button[type=submit]").await;
    let done = browser.page_with_heading("Reconnected").await;
    assert!(
        done.contains("CRM works with Keyed CRM again")
            && done.contains("Orders, from position page=4"),
        "{done}"
    );
    browser.screenshot("reconnected").await;
    browser.close().await;

    let (_, shown) = platform
        .call("GET", &format!("/v1/connections/{id}"), None)
        .await;
    assert_eq!(shown["status"], "healthy", "{shown}");
    let (_, p) = platform
        .call("GET", &format!("/v1/pipelines/{pipeline}"), None)
        .await;
    assert_eq!(p["state"], "running", "{p}");
    assert_eq!(p["resume_from"], "page=4", "{p}");
}
