//! The few pages an owner sees: small, plain, escaped, and saying what to do next.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

const LAYOUT: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>{{ title }}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto; line-height: 1.5">
{% if brand %}<header style="color: #555">{{ brand }}</header>{% endif %}
<h1 style="font-size: 1.4em">{{ title }}</h1>
{% block body %}{% endblock %}
{% if support %}<footer style="margin-top: 2em; color: #555">Questions? Write to <a href="mailto:{{ support }}">{{ support }}</a>.</footer>{% endif %}
</body></html>"#;

const REAUTHORIZE: &str = r#"{% extends "layout.html" %}{% block body %}
<p><b>{{ name }}</b> reads from <b>{{ provider }}</b>{% if account %} as account <b>{{ account }}</b>{% endif %}.
It lost access{% if since %} on {{ since }}{% endif %}, and its data stopped flowing.</p>
<p>Reconnect it by signing in to {{ provider }}{% if account %} as <b>{{ account }}</b>{% endif %} and approving access.
The paused pipelines then resume where they stopped.</p>
<form method="post"><button type="submit" style="font-size: 1.1em; padding: .5em 1.2em">Reauthorize</button></form>
{% endblock %}"#;

const CONNECT: &str = r#"{% extends "layout.html" %}{% block body %}
<p>You are asked to connect <b>{{ name }}</b> to your <b>{{ provider }}</b> account{% if account %} <b>{{ account }}</b>{% endif %}.</p>
<p>Sign in to {{ provider }}{% if account %} as <b>{{ account }}</b>{% endif %} and approve access; the data then starts flowing.
Nothing is connected until you do.</p>
<form method="post"><button type="submit" style="font-size: 1.1em; padding: .5em 1.2em">Connect</button></form>
{% endblock %}"#;

const CREDENTIALS: &str = r#"{% extends "layout.html" %}{% block body %}
<p><b>{{ name }}</b> reads from <b>{{ provider }}</b> with {% if basic %}a user name and password{% else %}an API key{% endif %}, and {{ provider }} no longer accepts the one it has. Enter the new one: it is tried at {{ provider }} before anything is stored.</p>
{% if problem %}<p role="alert" style="color: #a00"><b>{{ problem }}</b></p>{% endif %}
<form method="post" autocomplete="off">
{% if basic %}<p><label for="username">User name</label><br><input id="username" name="username" type="text" required style="width: 100%"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" required style="width: 100%"></p>
{% else %}<p><label for="api_key">API key</label><br><input id="api_key" name="api_key" type="password" required style="width: 100%"></p>{% endif %}
<button type="submit" style="font-size: 1.1em; padding: .5em 1.2em">Save and reconnect</button>
</form>
{% endblock %}"#;

const MESSAGE: &str = r#"{% extends "layout.html" %}{% block body %}
{% for p in paragraphs %}<p>{{ p }}</p>{% endfor %}
{% if pipelines %}<ul>{% for p in pipelines %}<li>{{ p.name }}, from position <code>{{ p.position or "(start)" }}</code></li>{% endfor %}</ul>{% endif %}
{% endblock %}"#;

pub struct Pages {
    env: minijinja::Environment<'static>,
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
        Ok(Self { env })
    }

    fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(html) => (status, Html(html)).into_response(),
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

    /// The re-entry form of a key or a password, with what went wrong last time.
    pub fn credentials_form(
        &self,
        name: &str,
        provider: &str,
        basic: bool,
        problem: Option<&str>,
        status: StatusCode,
    ) -> Response {
        let ctx = minijinja::context! {
            title => format!("New credentials for {name}"), name, provider, basic, problem,
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
