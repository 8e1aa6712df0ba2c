//! Every preset of the catalog, configured with only a client id and secret, sends its token,
//! probe and authorize requests the way its provider documents them. One local fake stands in
//! for every provider (each under its own path prefix, the preset's own paths below it) and
//! records what arrives: method, path, client authentication, form parameters, where the
//! access token goes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use credwatch::catalog::{self, Preset};
use serde_json::{Value, json};

use crate::helpers::TestEnv;
use crate::reauth::no_redirects;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Seen {
    /// The parameters of a token request, sent as a form or as a JSON object of strings.
    fn form(&self) -> BTreeMap<String, String> {
        if self.is_json() {
            let object: BTreeMap<String, Value> =
                serde_json::from_str(&self.body).unwrap_or_default();
            return object
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                .collect();
        }
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    fn is_json(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }

    fn is_form(&self) -> bool {
        self.headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    }
}

/// The preset's settings with every operator placeholder given as "example".
fn settings(p: &Preset) -> toml::Table {
    let values = p
        .placeholders
        .keys()
        .map(|n| (n.clone(), "example".to_owned()))
        .collect();
    p.settings_for(&values).expect("placeholders given")
}

fn text(settings: &toml::Table, key: &str) -> Option<String> {
    settings
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// A URL's path (and query), moved under the fake at `/<id>`.
fn under(fake: &str, id: &str, url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("a preset URL");
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    format!("{fake}/{id}{}{query}", url.path())
}

/// A JSON answer that has `value` at `pointer` (and `ok: true`, which Slack's answers carry).
fn with_pointer(pointer: &str, value: &str) -> Value {
    let mut root = json!({"ok": true});
    let mut at = &mut root;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next = if last { json!(value) } else { json!({}) };
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(part.to_string())
            .or_insert(next);
    }
    root
}

/// Adds a connection of `provider` for `account` from a token response (on stdin); its id.
async fn add(env: &TestEnv, provider: &str, account: &str, tokens: &Value) -> String {
    let out = env
        .cli_with_stdin(
            &[
                "connection",
                "add",
                "--provider",
                provider,
                "--name",
                provider,
                "--owner",
                "ada@example.com",
                "--account",
                account,
                "--tokens",
                "-",
            ],
            tokens.to_string().as_bytes(),
        )
        .await;
    assert!(
        out.status.success(),
        "{provider}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn fake(seen: Arc<Mutex<Vec<Seen>>>) -> String {
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: String| {
            let seen = seen.clone();
            async move {
                let path = uri.path().to_owned();
                let id = path.split('/').nth(1).unwrap_or("").to_owned();
                seen.lock().unwrap().push(Seen {
                    method: method.to_string(),
                    path: path.clone(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: body.clone(),
                });
                let p = catalog::get(&id).expect("a preset's path");
                let s = settings(&p);
                let token_path = reqwest::Url::parse(&text(&s, "token_url").unwrap())
                    .unwrap()
                    .path()
                    .to_owned();
                let answer = if path == format!("/{id}{token_path}") {
                    let mut answer = json!({"access_token": format!("at-new-{id}"),
                        "token_type": "Bearer", "expires_in": 3600});
                    if s.get("issues_refresh_tokens").and_then(|v| v.as_bool()) != Some(false) {
                        answer["refresh_token"] = json!(format!("rt-new-{id}"));
                    }
                    answer
                } else {
                    let pointer = text(&s, "account_from")
                        .and_then(|a| a.strip_prefix("probe:").map(str::to_owned))
                        .unwrap_or_else(|| "/id".into());
                    with_pointer(&pointer, &format!("acct-{id}"))
                };
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    answer.to_string(),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn every_preset_refreshes_probes_and_sends_owners_to_sign_in_as_its_provider_documents() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fake = fake(seen.clone()).await;
    let presets: Vec<Preset> = catalog::names()
        .into_iter()
        .map(|n| catalog::get(n).unwrap())
        .collect();
    assert!(!presets.is_empty(), "the catalog");
    let mut config = String::new();
    for p in &presets {
        let s = settings(p);
        config.push_str(&format!(
            "\n[providers.{id}]\npreset = \"{id}\"\nclient_id = \"cid-{id}\"\nclient_secret = \"cs-{id}\"\n",
            id = p.id
        ));
        for (name, _) in p.placeholders.iter() {
            config.push_str(&format!("{name} = \"example\"\n"));
        }
        // The preset's own paths, on the fake: only the host is ours.
        for key in ["token_url", "authorize_url"] {
            let url = text(&s, key).unwrap_or_else(|| panic!("{}: {key}", p.id));
            config.push_str(&format!("{key} = \"{}\"\n", under(&fake, &p.id, &url)));
        }
        // A preset's revocation and introspection endpoints are not called here; a preset
        // without a probe (Snowflake has no cheap one) is checked by its refresh alone.
        for key in ["probe_url", "revocation_url", "introspection_url"] {
            if let Some(url) = text(&s, key) {
                config.push_str(&format!("{key} = \"{}\"\n", under(&fake, &p.id, &url)));
            }
        }
    }
    let env = TestEnv::with_config(&config);
    let check = env.ok(&["config", "check"]).await;
    for p in &presets {
        assert!(
            check.contains(&format!("providers.{}: preset {}", p.id, p.id)),
            "{check}"
        );
    }

    let mut ids = BTreeMap::new();
    for p in &presets {
        let tokens = json!({"access_token": format!("at-old-{}", p.id),
            "refresh_token": format!("rt-old-{}", p.id), "expires_in": 3600, "token_type": "Bearer"});
        let id = add(&env, &p.id, &format!("acct-{}", p.id), &tokens).await;
        ids.insert(p.id.clone(), id);
    }
    let report = env.ok(&["check", "--all", "--json"]).await;
    for line in report.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["after"], "healthy", "{r}");
    }

    let seen = seen.lock().unwrap().clone();
    let mut problems = Vec::new();
    for p in &presets {
        let id = &p.id;
        let s = settings(p);
        let path_of = |key: &str| {
            reqwest::Url::parse(&text(&s, key).unwrap())
                .unwrap()
                .path()
                .to_owned()
        };
        let token_path = format!("/{id}{}", path_of("token_url"));
        let mine: Vec<&Seen> = seen
            .iter()
            .filter(|r| r.path.starts_with(&format!("/{id}/")))
            .collect();
        // The refresh: a POST at the token endpoint (a form, or JSON where the preset says so)
        // with the preset's extra parameters and headers, the client as the preset says.
        match mine.iter().find(|r| r.path == token_path) {
            None if s.get("issues_refresh_tokens").and_then(|v| v.as_bool()) == Some(false) => {}
            None => problems.push(format!("{id}: no refresh at {token_path}")),
            Some(r) => {
                let form = r.form();
                let basic = r.headers.get("authorization").cloned().unwrap_or_default();
                let expected_basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("cid-{id}:cs-{id}"))
                );
                let client_auth = text(&s, "client_auth").unwrap_or_else(|| "basic".into());
                let json = text(&s, "token_request").as_deref() == Some("json");
                let extra_ok = s
                    .get("token_params")
                    .and_then(|t| t.as_table())
                    .is_none_or(|t| {
                        t.iter()
                            .all(|(k, v)| form.get(k).map(String::as_str) == v.as_str())
                    });
                let headers_ok = s
                    .get("token_headers")
                    .and_then(|h| h.as_table())
                    .is_none_or(|h| {
                        h.iter().all(|(k, v)| {
                            r.headers.get(&k.to_lowercase()).map(String::as_str) == v.as_str()
                        })
                    });
                let ok = r.method == "POST"
                    && headers_ok
                    && if json { r.is_json() } else { r.is_form() }
                    && extra_ok
                    && form.get("grant_type").map(String::as_str) == Some("refresh_token")
                    && form.get("refresh_token") == Some(&format!("rt-old-{id}"))
                    && match client_auth.as_str() {
                        "basic" => basic == expected_basic && !form.contains_key("client_secret"),
                        "post" => {
                            basic.is_empty()
                                && form.get("client_id") == Some(&format!("cid-{id}"))
                                && form.get("client_secret") == Some(&format!("cs-{id}"))
                        }
                        _ => form.get("client_id") == Some(&format!("cid-{id}")),
                    };
                if !ok {
                    problems.push(format!("{id}: refresh {r:?} (client_auth {client_auth})"));
                }
            }
        }
        // The probe: the preset's method and headers, the access token where it goes.
        if text(&s, "probe_url").is_none() {
            continue;
        }
        let probe_path = format!("/{id}{}", path_of("probe_url"));
        let token_in =
            text(&s, "token_in").unwrap_or_else(|| "header:Authorization:Bearer ".into());
        let probes: Vec<&&Seen> = mine.iter().filter(|r| r.path == probe_path).collect();
        let newest = if s.get("issues_refresh_tokens").and_then(|v| v.as_bool()) == Some(false) {
            format!("at-old-{id}")
        } else {
            format!("at-new-{id}")
        };
        let method = text(&s, "probe_method")
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let headers_ok = |r: &Seen| {
            s.get("probe_headers")
                .and_then(|h| h.as_table())
                .is_none_or(|h| {
                    h.iter().all(|(k, v)| {
                        r.headers.get(&k.to_lowercase()).map(String::as_str) == v.as_str()
                    })
                })
        };
        let placed = |r: &Seen| match token_in.split_once(':') {
            Some(("header", rest)) => {
                let (name, prefix) = rest.split_once(':').unwrap_or((rest, ""));
                r.headers.get(&name.to_lowercase()) == Some(&format!("{prefix}{newest}"))
            }
            Some(("query", name)) => r.query.contains(&format!("{name}={newest}")),
            _ => false,
        };
        if !probes
            .iter()
            .any(|r| r.method == method && headers_ok(r) && placed(r))
        {
            problems.push(format!(
                "{id}: no {method} probe at {probe_path} with {token_in}{newest}: {probes:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Signing in: the authorize request the preset describes.
    let _daemon = env.spawn().await;
    let mut problems = Vec::new();
    for p in &presets {
        let id = &p.id;
        let s = settings(p);
        let out = env
            .ok(&[
                "connection",
                "invite",
                "--provider",
                id,
                "--name",
                "New",
                "--owner",
                "ada@example.com",
            ])
            .await;
        let link = out.trim();
        let response = no_redirects().post(link).send().await.unwrap();
        let Some(location) = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
        else {
            problems.push(format!("{id}: no redirect ({})", response.status()));
            continue;
        };
        let location = reqwest::Url::parse(location).unwrap();
        let query: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
        let authorize = reqwest::Url::parse(&text(&s, "authorize_url").unwrap()).unwrap();
        let mut expected: BTreeMap<String, String> = BTreeMap::from([
            ("response_type".into(), "code".into()),
            ("client_id".into(), format!("cid-{id}")),
            ("code_challenge_method".into(), "S256".into()),
            (
                "redirect_uri".into(),
                format!("{}/oauth/callback", env.base_url()),
            ),
        ]);
        if let Some(scopes) = text(&s, "scopes") {
            expected.insert(
                "scope".into(),
                scopes.split_whitespace().collect::<Vec<_>>().join(" "),
            );
        }
        if let Some(params) = s.get("authorize_params").and_then(|v| v.as_table()) {
            for (k, v) in params {
                expected.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
            }
        }
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(k, v)| query.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v} (got {:?})", query.get(k)))
            .collect();
        if location.path() != format!("/{id}{}", authorize.path()) || !wrong.is_empty() {
            problems.push(format!("{id}: {location} {wrong:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_command_line_lists_the_catalog_and_shows_a_preset_with_its_sources() {
    let env = TestEnv::new();
    let list = env.ok(&["providers", "list"]).await;
    for name in catalog::names() {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name}: {list}");
    }
    assert!(list.contains("rotating"), "{list}");
    let show = env.ok(&["providers", "show", "xero"]).await;
    assert!(
        show.contains("preset = \"xero\"")
            && show.contains("token_url = \"https://identity.xero.com/connect/token\"")
            && show.contains("# source: https://"),
        "{show}"
    );
    let unknown = env.cli(&["providers", "show", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no preset \"nope\""));
}

/// Calls seen by `instances`: the origin called, the path, the Authorization header.
type Calls = Arc<Mutex<Vec<(String, String, String)>>>;

/// Three origins of one fake Salesforce: a login host, the org's first instance and the one it
/// moves to. The token endpoint answers the first refresh without an `instance_url` and later
/// ones with the second instance's.
async fn instances(calls: Calls) -> [String; 3] {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let origins: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port()))
        .collect();
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for (listener, origin) in listeners.into_iter().zip(origins.clone()) {
        let (calls, refreshes, moved) = (calls.clone(), refreshes.clone(), origins[2].clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                let (calls, refreshes, moved, origin) = (
                    calls.clone(),
                    refreshes.clone(),
                    moved.clone(),
                    origin.clone(),
                );
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    calls
                        .lock()
                        .unwrap()
                        .push((origin, uri.path().to_owned(), auth));
                    let answer = if uri.path() == "/services/oauth2/token" {
                        let n = refreshes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut answer = json!({"access_token": format!("at-{n}"),
                            "token_type": "Bearer", "issued_at": "1700000000000"});
                        if n > 0 {
                            answer["instance_url"] = json!(moved);
                        }
                        answer
                    } else {
                        json!({"user_id": "005xx0000012345", "organization_id": "00Dxx0000001gEF"})
                    };
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        answer.to_string(),
                    )
                }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    [origins[0].clone(), origins[1].clone(), origins[2].clone()]
}

/// Salesforce answers each grant with its org's own API origin: the probe goes there, and a
/// refresh naming another origin (the org moved) moves the probe and the stored origin with it.
#[tokio::test]
async fn the_probe_follows_the_instance_the_grant_names() {
    let calls: Calls = Arc::default();
    let [login, first, moved] = instances(calls.clone()).await;
    let env = TestEnv::with_config(&format!(
        "\n[providers.salesforce]\npreset = \"salesforce\"\nclient_id = \"cid\"\n\
         client_secret = \"cs\"\ntoken_url = \"{login}/services/oauth2/token\"\n\
         authorize_url = \"{login}/services/oauth2/authorize\"\n\
         probe_url = \"{login}/services/oauth2/userinfo\"\n"
    ));
    let tokens = json!({"access_token": "at-old", "refresh_token": "rt", "token_type": "Bearer",
        "instance_url": first});
    let id = add(&env, "salesforce", "005xx0000012345", &tokens).await;
    let query = format!("SELECT instance_url FROM connections WHERE id = '{id}'");
    let stored = || env.value(&query);
    assert_eq!(stored().await, first);

    let probes = |calls: &Calls| -> Vec<(String, String)> {
        calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path, _)| path == "/services/oauth2/userinfo")
            .map(|(origin, _, auth)| (origin.clone(), auth.clone()))
            .collect()
    };
    let report = env.ok(&["check", &id, "--json"]).await;
    assert!(report.contains("\"after\":\"healthy\""), "{report}");
    // Adding it already asked the instance whose account this is.
    assert_eq!(
        probes(&calls),
        [
            (first.clone(), "Bearer at-old".to_owned()),
            (first.clone(), "Bearer at-0".to_owned())
        ]
    );
    assert_eq!(
        stored().await,
        first,
        "a refresh that names no instance keeps it"
    );

    let report = env.ok(&["check", &id, "--json"]).await;
    assert!(report.contains("\"after\":\"healthy\""), "{report}");
    assert_eq!(
        probes(&calls).last(),
        Some(&(moved.clone(), "Bearer at-1".to_owned())),
        "the probe after the move goes to the new instance"
    );
    assert_eq!(stored().await, moved);
    assert!(
        probes(&calls).iter().all(|(origin, _)| origin != &login),
        "never the login host"
    );
}

/// Zendesk answers a request whose credentials it did not take with an anonymous user (id
/// null), not a 401: such an answer is not "healthy", and not proof of a dead grant either.
#[tokio::test]
async fn a_probe_answer_that_names_no_account_degrades_and_breaks_nothing() {
    let app = axum::Router::new()
        .route(
            "/oauth/tokens",
            axum::routing::post(|| async {
                axum::Json(json!({"access_token": "at-new", "refresh_token": "rt-new",
                    "token_type": "bearer", "expires_in": 1800}))
            }),
        )
        .route(
            "/api/v2/users/me.json",
            axum::routing::get(|| async {
                axum::Json(json!({"user": {"id": null, "name": "Anonymous user",
                    "role": "end-user"}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let env = TestEnv::with_config(&format!(
        "\n[providers.zendesk]\npreset = \"zendesk\"\nsubdomain = \"acme\"\nclient_id = \"cid\"\n\
         client_secret = \"cs\"\ntoken_url = \"{fake}/oauth/tokens\"\n\
         authorize_url = \"{fake}/oauth/authorizations/new\"\n\
         probe_url = \"{fake}/api/v2/users/me.json\"\n"
    ));
    let tokens = json!({"access_token": "at-old", "refresh_token": "rt-old", "expires_in": 1800});
    let id = add(&env, "zendesk", "3456", &tokens).await;
    let report: Value = serde_json::from_str(&env.ok(&["check", &id, "--json"]).await).unwrap();
    assert_eq!(report["after"], "degraded", "{report}");
    assert!(
        report.to_string().contains("names no account at /user/id"),
        "{report}"
    );
}
