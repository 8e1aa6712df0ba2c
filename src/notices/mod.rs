//! What owners and operators are told, and in which words: the one place a category becomes a
//! sentence, and the templates (built in, each replaceable by a file of the same name in
//! `mail.templates_dir`).

use std::path::Path;

use serde::Serialize;

use crate::domain::Category;

/// Every template, by name: `KIND.subject`, `KIND.txt` and, for owners' notices, `KIND.html`.
const BUILTIN: &[(&str, &str)] = &[
    (
        "credentials_expired.subject",
        include_str!("templates/credentials_expired.subject"),
    ),
    (
        "credentials_expired.txt",
        include_str!("templates/credentials_expired.txt"),
    ),
    (
        "credentials_expired.html",
        include_str!("templates/credentials_expired.html"),
    ),
    (
        "reconnected.subject",
        include_str!("templates/reconnected.subject"),
    ),
    ("reconnected.txt", include_str!("templates/reconnected.txt")),
    (
        "reconnected.html",
        include_str!("templates/reconnected.html"),
    ),
    (
        "expiring_soon.subject",
        include_str!("templates/expiring_soon.subject"),
    ),
    (
        "expiring_soon.txt",
        include_str!("templates/expiring_soon.txt"),
    ),
    (
        "expiring_soon.html",
        include_str!("templates/expiring_soon.html"),
    ),
    (
        "connect_invitation.subject",
        include_str!("templates/connect_invitation.subject"),
    ),
    (
        "connect_invitation.txt",
        include_str!("templates/connect_invitation.txt"),
    ),
    (
        "connect_invitation.html",
        include_str!("templates/connect_invitation.html"),
    ),
    (
        "operator_alert.subject",
        include_str!("templates/operator_alert.subject"),
    ),
    (
        "operator_alert.txt",
        include_str!("templates/operator_alert.txt"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("mail template {name}: {source}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
    #[error("cannot read mail template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// What happened to a grant, for someone who is not an engineer.
pub fn explain(category: Category, provider: &str) -> String {
    use Category::*;
    match category {
        Expired => format!(
            "the authorization you gave expired. {provider} ends access after a period without \
             use, or after a fixed lifetime."
        ),
        Revoked => format!(
            "the authorization was withdrawn: by you or an administrator at {provider}, or \
             because the app was removed from the account."
        ),
        PasswordChanged => {
            "the account's password was changed or reset, which ends every earlier authorization."
                .to_owned()
        }
        AccessChanged => {
            "the account's access or permissions changed, and the authorization no longer \
             covers the data we read."
                .to_owned()
        }
        ReconsentRequired => format!(
            "{provider} asks you to sign in again and confirm access (for example after a new \
             security policy or multi-factor sign-in)."
        ),
        AccountDisabled => "the account was disabled or removed from its organization.".to_owned(),
        RotationLost => format!(
            "our service lost the authorization: {provider} renewed it, and our side failed \
             before it could keep the renewed one. Nothing you did caused this, and nothing \
             changed in your account; connecting again restores it."
        ),
        Healthy | Transient | RateLimited | ClientMisconfigured | Unknown => {
            format!("{provider} no longer accepts the authorization.")
        }
    }
}

/// A rendered notice.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

pub struct Templates {
    env: minijinja::Environment<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by `dir/NAME` when that file exists. Every
    /// template is compiled here, so a broken override stops the start, not a notice.
    pub fn load(dir: Option<&Path>) -> Result<Self, NoticeError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, builtin) in BUILTIN {
            let source = match dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => {
                    std::fs::read_to_string(&path).map_err(|source| NoticeError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                None => (*builtin).to_owned(),
            };
            env.add_template_owned(*name, source)
                .map_err(|source| NoticeError::Template {
                    name: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(Self { env })
    }

    pub fn render(&self, kind: &str, context: &impl Serialize) -> Result<Rendered, NoticeError> {
        let ctx = minijinja::Value::from_serialize(context);
        let one = |suffix: &str| -> Result<Option<String>, NoticeError> {
            let name = format!("{kind}.{suffix}");
            let Ok(t) = self.env.get_template(&name) else {
                return Ok(None);
            };
            t.render(&ctx)
                .map(Some)
                .map_err(|source| NoticeError::Template { name, source })
        };
        let subject = one("subject")?.unwrap_or_default();
        Ok(Rendered {
            // A subject is one line, whatever the template's trailing newline.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: one("txt")?.unwrap_or_default(),
            html: one("html")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expired(n: usize, reminder: bool) -> serde_json::Value {
        let c = serde_json::json!({
            "name": "Sales <CRM>", "provider": "Acme", "account": "ada", "explanation": explain(Category::Revoked, "Acme"),
            "since": "2026-11-22 07:00 UTC", "link": "https://cw.example/reauthorize/abc", "link_expires": "2026-12-22",
            "pipelines": [{"name": "CRM to warehouse", "position": "cursor=17"}], "typed": null
        });
        serde_json::json!({ "reminder": reminder, "connections": vec![c; n] })
    }

    #[test]
    fn the_built_in_templates_render_every_notice() {
        let t = Templates::load(None).unwrap();
        let one = t.render("credentials_expired", &expired(1, false)).unwrap();
        assert_eq!(
            one.subject,
            r#"Credentials expired in source "Sales <CRM>""#
        );
        assert!(
            one.text.contains("cursor=17")
                && one.text.contains("https://cw.example/reauthorize/abc")
        );
        assert!(one.text.contains("withdrawn"), "{}", one.text);
        let html = one.html.unwrap();
        assert!(
            html.contains("Sales &lt;CRM&gt;"),
            "HTML is escaped: {html}"
        );
        let digest = t.render("credentials_expired", &expired(3, true)).unwrap();
        assert_eq!(digest.subject, "Reminder: Credentials expired in 3 sources");
        let alert = t
            .render(
                "operator_alert",
                &serde_json::json!({"provider": "acme", "kind": "client_misconfigured", "detail": "HTTP 401: invalid_client"}),
            )
            .unwrap();
        assert!(alert.html.is_none() && alert.text.contains("invalid_client"));

        // A key's owner is told to enter the new one, not to sign in.
        let mut keyed = expired(1, false);
        keyed["connections"][0]["typed"] = "API key".into();
        let keyed = t.render("credentials_expired", &keyed).unwrap();
        assert!(
            keyed.text.contains("enter the new API key") && !keyed.text.contains("sign in"),
            "{}",
            keyed.text
        );
        let invitation = t
            .render(
                "connect_invitation",
                &serde_json::json!({"name": "Sales CRM", "provider": "Acme", "account": "ada",
                    "typed": null, "brand": "Northwind", "link": "https://cw.example/connect/x",
                    "link_expires": "2026-12-03 10:00 UTC"}),
            )
            .unwrap();
        assert_eq!(invitation.subject, "Connect your Acme account to Northwind");
        assert!(
            invitation.text.contains("sign in to Acme as ada")
                && invitation.text.contains("https://cw.example/connect/x")
                && invitation.text.contains("until 2026-12-03 10:00 UTC"),
            "{}",
            invitation.text
        );
    }

    #[test]
    fn an_override_replaces_a_built_in_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reconnected.subject"), "Back: {{ name }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t
            .render(
                "reconnected",
                &serde_json::json!({"name": "CRM", "provider": "Acme", "account": null, "since": "a", "until": "b", "pipelines": []}),
            )
            .unwrap();
        assert_eq!(r.subject, "Back: CRM");
        std::fs::write(dir.path().join("reconnected.txt"), "{% if %}").unwrap();
        let err = Templates::load(Some(dir.path())).err().unwrap().to_string();
        assert!(err.contains("reconnected.txt"), "{err}");
    }
}
