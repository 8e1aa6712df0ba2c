//! The few pages an owner sees: small, plain, escaped, and saying what to do next.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

/// The one style sheet: inline (a page is one request), and allowed by its hash alone.
pub(crate) const STYLE: &str = "
body { font: 1rem/1.5 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 0 }
main { max-width: 36rem; margin: 0 auto; padding: 2rem 1rem }
header, footer { color: #4a4a4a; font-size: .95rem }
footer { margin-top: 2.5rem; border-top: 1px solid #ddd; padding-top: 1rem }
h1 { font-size: 1.5rem; line-height: 1.25 }
label { font-weight: 600; display: block }
.help { color: #4a4a4a; font-size: .95rem; margin: .15rem 0 .35rem }
input { font: inherit; width: 100%; box-sizing: border-box; padding: .6rem; border: 1px solid #767676; border-radius: 4px }
button { font: inherit; font-weight: 600; padding: .7rem 1.4rem; border: 0; border-radius: 4px; background: #1f4fb8; color: #fff; cursor: pointer }
:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px }
.problem { border-left: 4px solid #b00020; background: #fdecee; padding: .6rem .8rem; color: #6d0012 }
code { overflow-wrap: anywhere }
@media (prefers-color-scheme: dark) {
  body { color: #eee; background: #121212 } header, footer, .help { color: #bbb }
  input { background: #1e1e1e; color: #eee } .problem { background: #3a1016; color: #ffd7dc }
}
";

const LAYOUT: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">
<title>{{ title }}{% if brand %} · {{ brand }}{% endif %}</title><style>{{ style|safe }}</style></head>
<body><main>
{% if brand %}<header>{{ brand }}</header>{% endif %}
<h1>{{ title }}</h1>
{% block body %}{% endblock %}
{% if support %}<footer>Questions? Write to <a href="mailto:{{ support }}">{{ support }}</a>.</footer>{% endif %}
</main></body></html>"#;

const REAUTHORIZE: &str = r#"{% extends "layout.html" %}{% block body %}
<p><b>{{ name }}</b> reads from <b>{{ provider }}</b>{% if account %} as account <b>{{ account }}</b>{% endif %}.
It lost access{% if since %} on {{ since }}{% endif %}, and its data stopped flowing.</p>
<p>Reconnect it by signing in to {{ provider }}{% if account %} as <b>{{ account }}</b>{% endif %} and approving access.
The paused pipelines then resume where they stopped.</p>
<form method="post"><button type="submit">Reauthorize</button></form>
{% endblock %}"#;

const CONNECT: &str = r#"{% extends "layout.html" %}{% block body %}
<p>You are asked to connect <b>{{ name }}</b> to your <b>{{ provider }}</b> account{% if account %} <b>{{ account }}</b>{% endif %}.</p>
<p>Sign in to {{ provider }}{% if account %} as <b>{{ account }}</b>{% endif %} and approve access; the data then starts flowing.
Nothing is connected until you do.</p>
<form method="post"><button type="submit">Connect</button></form>
{% endblock %}"#;

const CREDENTIALS: &str = r#"{% extends "layout.html" %}{% block body %}
{% if connect %}<p>You are asked to connect <b>{{ name }}</b> to your <b>{{ provider }}</b> account{% if account %} <b>{{ account }}</b>{% endif %}.
Enter its {{ what }} below: it is tried at {{ provider }} before anything is stored, and the data then starts flowing.</p>
{% else %}<p><b>{{ name }}</b> reads from <b>{{ provider }}</b> with {{ what }}, and {{ provider }} no longer accepts the one it has.
Enter the new one: it is tried at {{ provider }} before anything is stored.</p>{% endif %}
{% if problem %}<p class="problem" role="alert" id="problem"><b>Not saved.</b> {{ problem }}</p>{% endif %}
<form method="post" autocomplete="off">
{% for f in fields %}<p><label for="{{ f.name }}">{{ f.label }}</label>
{% if f.help %}<span class="help" id="{{ f.name }}-help">{{ f.help }}</span>{% endif %}
<input id="{{ f.name }}" name="{{ f.name }}" type="{% if f.secret %}password{% else %}text{% endif %}" required
 autocapitalize="off" spellcheck="false"{% if loop.first %} autofocus{% endif %}
 {%- if f.help or problem %} aria-describedby="{% if f.help %}{{ f.name }}-help{% endif %}{% if problem %} problem{% endif %}"{% endif %}
 {%- if problem %} aria-invalid="true"{% endif %}></p>
{% endfor %}<button type="submit">{% if connect %}Save and connect{% else %}Save and reconnect{% endif %}</button>
</form>
{% endblock %}"#;

const MESSAGE: &str = r#"{% extends "layout.html" %}{% block body %}
{% for p in paragraphs %}<p>{{ p }}</p>{% endfor %}
{% if pipelines %}<ul>{% for p in pipelines %}<li>{{ p.name }}, from position <code>{{ p.position or "(start)" }}</code></li>{% endfor %}</ul>{% endif %}
{% endblock %}"#;

pub struct Pages {
    env: minijinja::Environment<'static>,
    /// No script, no image, no frame; the style sheet by its hash.
    policy: axum::http::HeaderValue,
}

/// Who fills a credentials form and why: a new connection from a connect link, or an
/// existing one whose key stopped working.
pub struct CredentialsForm<'a> {
    pub connect: bool,
    pub name: &'a str,
    pub provider: &'a crate::config::ProviderConfig,
    pub account: Option<&'a str>,
    pub problem: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ResumedView {
    pub name: String,
    pub position: Option<String>,
}

impl Pages {
    /// Pages that speak for `brand` and, when given, send questions to `support`.
    pub fn new(brand: Option<&str>, support: Option<&str>) -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        if let Some(brand) = brand {
            env.add_global("brand", brand.to_owned());
        }
        if let Some(support) = support {
            env.add_global("support", support.to_owned());
        }
        env.add_template("layout.html", LAYOUT)?;
        env.add_template("reauthorize.html", REAUTHORIZE)?;
        env.add_template("message.html", MESSAGE)?;
        env.add_template("connect.html", CONNECT)?;
        env.add_template("credentials.html", CREDENTIALS)?;
        env.add_global("style", STYLE);
        Ok(Self {
            env,
            policy: content_security_policy(),
        })
    }

    fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (
                status,
                [(
                    axum::http::header::CONTENT_SECURITY_POLICY,
                    self.policy.clone(),
                )],
                Html(html),
            )
                .into_response(),
            Err(e) => {
                tracing::error!("page {name}: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }

    pub fn reauthorize(
        &self,
        name: &str,
        provider: &str,
        account: Option<&str>,
        since: Option<String>,
    ) -> Response {
        let ctx = minijinja::context! {
            title => format!("Reconnect {name}"), name, provider, account, since,
        };
        self.render(StatusCode::OK, "reauthorize.html", ctx)
    }

    pub fn connect(&self, name: &str, provider: &str, account: Option<&str>) -> Response {
        let ctx = minijinja::context! {
            title => format!("Connect {name}"), name, provider, account,
        };
        self.render(StatusCode::OK, "connect.html", ctx)
    }

    /// The form of a key or a password, with what went wrong last time.
    pub fn credentials_form(&self, form: CredentialsForm<'_>) -> Response {
        let p = form.provider;
        let (what, a_what) = match p.auth {
            crate::config::ProviderAuth::Basic => {
                ("user name and password", "a user name and password")
            }
            _ => ("API key", "an API key"),
        };
        let title = if form.connect {
            format!("Connect {}", form.name)
        } else {
            format!("New {what} for {}", form.name)
        };
        let status = if form.problem.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        let ctx = minijinja::context! {
            title, name => form.name, provider => &p.display_name, account => form.account,
            problem => form.problem, connect => form.connect, fields => &p.fields,
            what => if form.connect { what } else { a_what },
        };
        self.render(status, "credentials.html", ctx)
    }

    /// A page of plain paragraphs (and, after a reconnection, the resumed pipelines).
    pub fn message(
        &self,
        status: StatusCode,
        title: &str,
        paragraphs: &[&str],
        pipelines: &[ResumedView],
    ) -> Response {
        let ctx = minijinja::context! { title, paragraphs, pipelines };
        self.render(status, "message.html", ctx)
    }
}

/// `default-src 'none'` with the inline style sheet allowed by its SHA-256. `form-action` is
/// left out on purpose: the Reauthorize and Connect buttons post here and are redirected to the
/// provider's sign-in, and browsers apply `form-action` to that redirect too.
pub(crate) fn content_security_policy() -> axum::http::HeaderValue {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
    );
    axum::http::HeaderValue::from_str(&policy).unwrap_or(axum::http::HeaderValue::from_static(
        "default-src 'none'; frame-ancestors 'none'",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_the_platform_and_where_to_ask_escaped() {
        let pages = Pages::new(Some("Acme <Data>"), Some("help@acme.example")).unwrap();
        let response = pages.message(StatusCode::OK, "Hello", &["<b>hi</b>"], &[]);
        let body = futures_body(response);
        assert!(body.contains("Acme &lt;Data&gt;"), "{body}");
        assert!(body.contains("mailto:help@acme.example"), "{body}");
        assert!(
            body.contains("&lt;b&gt;hi") && !body.contains("<b>hi"),
            "{body}"
        );
        let plain = Pages::new(None, None).unwrap();
        let body = futures_body(plain.message(StatusCode::OK, "Hello", &[], &[]));
        assert!(
            !body.contains("mailto:") && !body.contains("<header"),
            "{body}"
        );
    }

    #[test]
    fn the_policy_allows_the_pages_own_style_sheet_and_nothing_else() {
        use base64::Engine;
        use sha2::Digest;
        let pages = Pages::new(None, None).unwrap();
        let response = pages.message(StatusCode::OK, "Hello", &[], &[]);
        let policy = response.headers()[axum::http::header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        let body = futures_body(response);
        let style = &body[body.find("<style>").unwrap() + 7..body.find("</style>").unwrap()];
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
        assert!(
            policy.starts_with("default-src 'none'")
                && policy.contains(&format!("style-src 'sha256-{hash}'"))
                && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
        assert!(
            !body.contains("style=\""),
            "no inline style attribute: {body}"
        );
    }

    fn futures_body(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        })
    }
}
