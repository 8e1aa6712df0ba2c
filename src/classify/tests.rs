//! One row per classification rule of the product, and the faults the fake provider injects.

use super::*;
use Category::*;
use Phase::{Probe, Refresh};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn response(status: u16, body: &str) -> Outcome {
    Outcome::Response(Response {
        status,
        body: body.as_bytes().to_vec(),
        ..Response::default()
    })
}

fn with_header(status: u16, header: &str, value: &str, body: &str) -> Outcome {
    let mut r = Response {
        status,
        body: body.as_bytes().to_vec(),
        ..Response::default()
    };
    match header {
        "retry-after" => r.retry_after = Some(value.into()),
        "www-authenticate" => r.www_authenticate = Some(value.into()),
        "location" => r.location = Some(value.into()),
        other => panic!("no such header in tests: {other}"),
    }
    Outcome::Response(r)
}

fn transport(kind: TransportKind) -> Outcome {
    Outcome::Transport(TransportFailure {
        kind,
        message: "connection refused".into(),
    })
}

fn run(kind: ProviderKind, phase: Phase, outcome: &Outcome) -> Classification {
    classify(phase, outcome, &preset(kind).unwrap(), now())
}

#[test]
fn the_table() {
    use ProviderKind::*;
    let ms_err = |code: u32, error: &str| {
        format!(
            r#"{{"error":"{error}","error_description":"AADSTS{code}: something. Trace ID: x","error_codes":[{code}]}}"#
        )
    };
    let fb = |code: u32, sub: Option<u32>| match sub {
        Some(s) => format!(
            r#"{{"error":{{"message":"m","type":"OAuthException","code":{code},"error_subcode":{s}}}}}"#
        ),
        None => format!(r#"{{"error":{{"message":"m","type":"OAuthException","code":{code}}}}}"#),
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, ProviderKind, Phase, Outcome, Category)> = vec![
        // 1. Transport and status first.
        ("timeout", Generic, Refresh, transport(TransportKind::Timeout), Transient),
        ("connection refused", Generic, Refresh, transport(TransportKind::Connect), Transient),
        ("body over the cap", Generic, Refresh, transport(TransportKind::TooLarge), Transient),
        ("TLS or other transport error", Generic, Probe, transport(TransportKind::Other), Transient),
        ("500", Generic, Refresh, response(500, ""), Transient),
        ("502 with invalid_grant text", Generic, Refresh, response(502, r#"{"error":"invalid_grant"}"#), Transient),
        ("503", Generic, Probe, response(503, "Service Unavailable"), Transient),
        ("HTML error page, status 200", Generic, Refresh, response(200, "<!DOCTYPE html><html>invalid_grant</html>"), Transient),
        ("HTML error page, status 400", Generic, Refresh, response(400, "<html><body>invalid_grant</body></html>"), Transient),
        ("truncated JSON", Generic, Refresh, response(200, r#"{"access_token":"at","expi"#), Transient),
        ("truncated JSON error", Generic, Refresh, response(400, r#"{"error":"invalid_gr"#), Transient),
        ("200 JSON without access_token", Generic, Refresh, response(200, r#"{"token_type":"Bearer"}"#), Transient),
        ("429", Generic, Refresh, with_header(429, "retry-after", "30", r#"{"error":"invalid_grant"}"#), RateLimited),
        ("408", Generic, Refresh, response(408, ""), Transient),
        ("redirect", Generic, Refresh, with_header(302, "location", "https://login.example/", ""), Unknown),
        // A good answer.
        ("refreshed", Generic, Refresh, response(200, r#"{"access_token":"at","expires_in":3600}"#), Healthy),
        ("probe 200 JSON", Generic, Probe, response(200, r#"{"sub":"u"}"#), Healthy),
        ("probe 204", Generic, Probe, response(204, ""), Healthy),
        // 2. RFC 6749 §5.2 on refresh.
        ("invalid_grant", Generic, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#), Revoked),
        ("invalid_grant expired", Generic, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"Refresh token expired"}"#), Expired),
        ("issued to another client", Generic, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"The refresh token was issued to another client"}"#), ClientMisconfigured),
        ("invalid_client", Generic, Refresh, response(401, r#"{"error":"invalid_client"}"#), ClientMisconfigured),
        ("unauthorized_client", Generic, Refresh, response(400, r#"{"error":"unauthorized_client"}"#), ClientMisconfigured),
        ("unsupported_grant_type", Generic, Refresh, response(400, r#"{"error":"unsupported_grant_type"}"#), ClientMisconfigured),
        ("invalid_request", Generic, Refresh, response(400, r#"{"error":"invalid_request"}"#), ClientMisconfigured),
        ("invalid_scope", Generic, Refresh, response(400, r#"{"error":"invalid_scope"}"#), ClientMisconfigured),
        ("OIDC interaction_required", Generic, Refresh, response(400, r#"{"error":"interaction_required"}"#), ReconsentRequired),
        ("error on a 200", Generic, Refresh, response(200, r#"{"error":"invalid_grant"}"#), Revoked),
        // 3. The probe with a fresh access token.
        ("probe 401 invalid_token (header)", Generic, Probe, with_header(401, "www-authenticate", r#"Bearer error="invalid_token""#, ""), Revoked),
        ("probe 401 invalid_token (body)", Generic, Probe, response(401, r#"{"error":"invalid_token"}"#), Revoked),
        ("probe 403 insufficient_scope", Generic, Probe, with_header(403, "www-authenticate", r#"Bearer error="insufficient_scope", scope="read""#, "Forbidden"), AccessChanged),
        ("probe 502", Generic, Probe, response(502, "<html>Bad Gateway</html>"), Transient),
        ("probe invalid_request is not ours", Generic, Probe, response(400, r#"{"error":"invalid_request"}"#), Unknown),
        // 4. Microsoft.
        ("AADSTS50196 loop", Microsoft, Refresh, response(400, &ms_err(50196, "invalid_grant")), Transient),
        ("AADSTS90055 throttled", Microsoft, Refresh, response(400, &ms_err(90055, "invalid_grant")), RateLimited),
        ("AADSTS700082 expired", Microsoft, Refresh, response(400, &ms_err(700082, "invalid_grant")), Expired),
        ("AADSTS70008 expired", Microsoft, Refresh, response(400, &ms_err(70008, "invalid_grant")), Expired),
        ("AADSTS50173 password", Microsoft, Refresh, response(400, &ms_err(50173, "invalid_grant")), PasswordChanged),
        ("AADSTS50133 password", Microsoft, Refresh, response(400, &ms_err(50133, "invalid_grant")), PasswordChanged),
        ("interaction_required", Microsoft, Refresh, response(400, r#"{"error":"interaction_required","error_description":"AADSTS50000: x"}"#), ReconsentRequired),
        ("AADSTS50076 MFA", Microsoft, Refresh, response(400, &ms_err(50076, "invalid_grant")), ReconsentRequired),
        ("AADSTS50079 MFA", Microsoft, Refresh, response(400, &ms_err(50079, "invalid_grant")), ReconsentRequired),
        ("AADSTS53003 conditional access", Microsoft, Refresh, response(400, &ms_err(53003, "invalid_grant")), ReconsentRequired),
        ("AADSTS65001 consent", Microsoft, Refresh, response(400, &ms_err(65001, "invalid_grant")), ReconsentRequired),
        ("AADSTS50057 disabled", Microsoft, Refresh, response(400, &ms_err(50057, "invalid_grant")), AccountDisabled),
        ("AADSTS50034 not in directory", Microsoft, Refresh, response(400, &ms_err(50034, "invalid_grant")), AccountDisabled),
        ("AADSTS51004 not in directory", Microsoft, Refresh, response(400, &ms_err(51004, "invalid_grant")), AccountDisabled),
        ("AADSTS7000215 bad secret", Microsoft, Refresh, response(401, &ms_err(7000215, "invalid_client")), ClientMisconfigured),
        ("AADSTS7000222 expired secret", Microsoft, Refresh, response(401, &ms_err(7000222, "invalid_client")), ClientMisconfigured),
        ("AADSTS700016 app not found", Microsoft, Refresh, response(400, &ms_err(700016, "unauthorized_client")), ClientMisconfigured),
        ("AADSTS code only in the text", Microsoft, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity."}"#), Expired),
        ("Microsoft 503 stays transient", Microsoft, Refresh, response(503, &ms_err(70008, "invalid_grant")), Transient),
        // 4. Google.
        ("Google expired or revoked", Google, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#), Expired),
        ("Google invalid_rapt", Google, Refresh, response(400, r#"{"error":"invalid_grant","error_description":"reauth related error (invalid_rapt)","error_subtype":"invalid_rapt"}"#), ReconsentRequired),
        ("Google admin_policy_enforced", Google, Refresh, response(400, r#"{"error":"admin_policy_enforced"}"#), AccessChanged),
        ("Google deleted_client", Google, Refresh, response(401, r#"{"error":"deleted_client","error_description":"The OAuth client was deleted."}"#), ClientMisconfigured),
        // 4. Facebook: error 190 and its subcodes, rate limits, transient codes.
        ("Facebook 190/463 expired", Facebook, Probe, response(400, &fb(190, Some(463))), Expired),
        ("Facebook 190/458 revoked", Facebook, Probe, response(400, &fb(190, Some(458))), Revoked),
        ("Facebook 190/467 revoked", Facebook, Probe, response(400, &fb(190, Some(467))), Revoked),
        ("Facebook 190/460 password", Facebook, Probe, response(400, &fb(190, Some(460))), PasswordChanged),
        ("Facebook 190/459 checkpoint", Facebook, Probe, response(400, &fb(190, Some(459))), ReconsentRequired),
        ("Facebook 190/464 unconfirmed", Facebook, Probe, response(400, &fb(190, Some(464))), ReconsentRequired),
        ("Facebook 190 alone", Facebook, Probe, response(401, &fb(190, None)), Revoked),
        ("Facebook 4", Facebook, Probe, response(400, &fb(4, None)), RateLimited),
        ("Facebook 17", Facebook, Probe, response(400, &fb(17, None)), RateLimited),
        ("Facebook 32", Facebook, Probe, response(400, &fb(32, None)), RateLimited),
        ("Facebook 613", Facebook, Probe, response(400, &fb(613, None)), RateLimited),
        ("Facebook 1", Facebook, Probe, response(400, &fb(1, None)), Transient),
        ("Facebook 2", Facebook, Probe, response(400, &fb(2, None)), Transient),
        // 4. Slack: HTTP 200 with ok:false.
        ("Slack token_revoked", Slack, Probe, response(200, r#"{"ok":false,"error":"token_revoked"}"#), Revoked),
        ("Slack account_inactive", Slack, Probe, response(200, r#"{"ok":false,"error":"account_inactive"}"#), AccountDisabled),
        ("Slack invalid_refresh_token", Slack, Refresh, response(200, r#"{"ok":false,"error":"invalid_refresh_token"}"#), Revoked),
        ("Slack ok:true", Slack, Probe, response(200, r#"{"ok":true,"user":"u"}"#), Healthy),
        ("Slack unknown ok:false", Slack, Probe, response(200, r#"{"ok":false,"error":"fatal_error"}"#), Unknown),
        // 4. Auth0-based servers: 403 invalid_grant is an answer.
        ("Auth0 403 invalid_grant", Auth0, Refresh, response(403, r#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#), Revoked),
        ("generic 403 invalid_grant", Generic, Refresh, response(403, r#"{"error":"invalid_grant"}"#), Revoked),
        // 5. Anything unrecognised.
        ("unknown error code", Generic, Refresh, response(400, r#"{"error":"server_is_sad"}"#), Unknown),
        ("4xx JSON without an error", Generic, Refresh, response(404, r#"{"message":"not here"}"#), Unknown),
        ("probe 401 without a verdict", Generic, Probe, response(401, r#"{"message":"Unauthorized"}"#), Unknown),
        ("probe 401 plain text", Generic, Probe, response(401, "Unauthorized"), Transient),
    ];
    let mut failures = Vec::new();
    for (name, kind, phase, outcome, want) in &rows {
        let got = run(*kind, *phase, outcome);
        if got.category != *want {
            failures.push(format!(
                "{name}: want {want}, got {} ({})",
                got.category, got.detail
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_successful_refresh_carries_its_tokens() {
    let c = run(
        ProviderKind::Generic,
        Refresh,
        &response(
            200,
            r#"{"access_token":"at","refresh_token":"rt2","expires_in":60}"#,
        ),
    );
    let tokens = c.tokens.expect("tokens");
    assert_eq!(
        tokens.expires_at,
        Some(now() + chrono::TimeDelta::seconds(60))
    );
}

#[test]
fn retry_after_in_seconds_or_as_a_date() {
    let c = run(
        ProviderKind::Generic,
        Refresh,
        &with_header(429, "retry-after", "120", ""),
    );
    assert_eq!(c.retry_after, Some(Duration::from_secs(120)));
    let date = (now() + chrono::TimeDelta::seconds(90))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let c = run(
        ProviderKind::Generic,
        Refresh,
        &with_header(503, "retry-after", &date, ""),
    );
    assert_eq!(c.retry_after, Some(Duration::from_secs(90)));
    let c = run(
        ProviderKind::Generic,
        Refresh,
        &with_header(429, "retry-after", "soon", ""),
    );
    assert_eq!(c.category, RateLimited);
    assert_eq!(c.retry_after, None);
}

#[test]
fn a_hostile_retry_after_is_capped_not_trusted() {
    let day = Some(super::MAX_RETRY_AFTER);
    for value in [
        "99999999999",
        "18446744073709551615",
        "184467440737095516150000",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let c = run(
            ProviderKind::Generic,
            Refresh,
            &with_header(429, "retry-after", value, ""),
        );
        assert_eq!((c.category, c.retry_after), (RateLimited, day), "{value}");
    }
}

#[test]
fn an_operator_rule_comes_before_the_presets() {
    let own: Vec<Rule> = serde_json::from_str(
        r#"[{"phase": "refresh", "error": "invalid_grant", "description": "rate", "category": "rate_limited"}]"#,
    )
    .unwrap();
    let mut rules = own;
    rules.extend(preset(ProviderKind::Generic).unwrap());
    let body = r#"{"error":"invalid_grant","error_description":"Rate limit for refresh reached"}"#;
    let c = classify(Refresh, &response(400, body), &rules, now());
    assert_eq!(c.category, RateLimited);
    let c = classify(
        Refresh,
        &response(400, r#"{"error":"invalid_grant"}"#),
        &rules,
        now(),
    );
    assert_eq!(c.category, Revoked);
}

#[test]
fn details_are_short_and_say_what_was_seen() {
    let long = format!(
        r#"{{"error":"invalid_grant","error_description":"{}"}}"#,
        "é".repeat(500)
    );
    let c = run(ProviderKind::Generic, Refresh, &response(400, &long));
    assert!(c.detail.len() <= DETAIL_MAX + '…'.len_utf8());
    assert!(c.detail.starts_with("HTTP 400: invalid_grant"));
    let c = run(
        ProviderKind::Generic,
        Refresh,
        &response(200, "<html>maintenance</html>"),
    );
    assert_eq!(c.detail, "HTTP 200: an HTML page instead of JSON");
}
