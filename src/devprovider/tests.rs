use std::time::Duration;

use super::*;

const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-long";

fn provider(state_file: Option<PathBuf>) -> Arc<DevProvider> {
    DevProvider::load(DevProviderConfig {
        listen: "127.0.0.1:9000".parse().unwrap(),
        provider: "demo".parse().unwrap(),
        accounts: vec!["ada@example.com".parse().unwrap()],
        access_lifetime: Duration::from_secs(60),
        state_file,
    })
    .unwrap()
}

fn challenge() -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
}

/// Ada's consent to the client whose callback is 127.0.0.1:8080/cb, at t = 100.
fn consent(p: &DevProvider) -> String {
    p.approve(
        "ada@example.com",
        "openid",
        "http://127.0.0.1:8080/cb",
        &challenge(),
        100,
    )
}

fn granted(p: &DevProvider) -> Issued {
    let code = consent(p);
    p.exchange(&code, "http://127.0.0.1:8080/cb", VERIFIER, 110)
        .unwrap()
}

#[test]
fn a_code_is_exchanged_once_with_its_verifier_and_redirect() {
    let p = provider(None);
    let code = consent(&p);
    let wrong = p.exchange(
        &code,
        "http://127.0.0.1:8080/cb",
        "another-verifier-of-forty-three-characters-xx",
        110,
    );
    assert_eq!(wrong.err().map(|r| r.0), Some("invalid_grant"));
    // The failed attempt used the code up, as a stolen code must not be tried twice.
    let again = p.exchange(&code, "http://127.0.0.1:8080/cb", VERIFIER, 110);
    assert!(again.is_err());

    let code = consent(&p);
    let elsewhere = p.exchange(&code, "http://127.0.0.1:9999/cb", VERIFIER, 110);
    assert!(elsewhere.is_err());
    let code = consent(&p);
    assert!(
        p.exchange(&code, "http://127.0.0.1:8080/cb", VERIFIER, 161)
            .is_err(),
        "expired"
    );
    let issued = granted(&p);
    assert_eq!(
        p.account_of(&issued.access_token, 120).as_deref(),
        Some("ada@example.com")
    );
    assert_eq!(
        p.account_of(&issued.access_token, 171),
        None,
        "past its lifetime"
    );
}

#[test]
fn a_refresh_rotates_and_a_retired_token_presented_again_revokes_the_grant() {
    let p = provider(None);
    let first = granted(&p);
    let second = p.refresh(&first.refresh_token, 120).unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!(
        p.account_of(&first.access_token, 121),
        None,
        "the old access token is replaced"
    );
    assert!(p.account_of(&second.access_token, 121).is_some());

    let reuse = p.refresh(&first.refresh_token, 130).unwrap_err();
    assert_eq!(reuse.0, "invalid_grant");
    let after = p.refresh(&second.refresh_token, 131).unwrap_err();
    assert!(after.1.contains("revoked"), "{after:?}");
    assert_eq!(p.account_of(&second.access_token, 131), None);
}

#[test]
fn a_revoked_account_gets_invalid_grant_and_only_its_live_grants_count() {
    let p = provider(None);
    let issued = granted(&p);
    assert_eq!(p.revoke("test", 120, |g| g.account == "ada@example.com"), 1);
    assert_eq!(p.revoke("test", 121, |g| g.account == "ada@example.com"), 0);
    let refused = p.refresh(&issued.refresh_token, 122).unwrap_err();
    assert_eq!(
        refused,
        Refusal("invalid_grant", "the grant was revoked: test".into())
    );
    assert_eq!(
        p.refresh("dev_rt_unknown", 122).unwrap_err().0,
        "invalid_grant"
    );
}

#[test]
fn grants_survive_a_restart_through_the_state_file_which_holds_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("var/dev-provider.json");
    let issued = granted(&provider(Some(file.clone())));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&issued.refresh_token) && !text.contains(&issued.access_token));
    let again = provider(Some(file.clone()));
    assert!(again.refresh(&issued.refresh_token, 120).is_ok());

    std::fs::write(&file, "not json").unwrap();
    let e = DevProvider::load(again.config().clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("dev_provider.state_file") && e.contains("dev-provider.json"),
        "{e}"
    );
}

#[test]
fn pkce_is_the_verifiers_hash() {
    assert!(pkce_matches(VERIFIER, &challenge()));
    assert!(!pkce_matches("short", &challenge()));
    // RFC 7636 appendix B.
    assert!(pkce_matches(
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ));
}
