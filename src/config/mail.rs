//! `[mail]`, `[smtp]` and `[notices]`: how e-mails leave, and which notices are sent when.

use std::time::Duration;

use super::validate::Checker;
use super::*;

impl Checker<'_> {
    pub(super) fn mail(&mut self, m: raw::Mail, s: raw::Smtp) -> Option<MailConfig> {
        let from = m
            .from
            .unwrap_or_else(|| "credwatch <credwatch@localhost>".to_owned());
        let from = match from.parse::<lettre::message::Mailbox>() {
            Ok(f) => Some(f),
            Err(e) => {
                self.problem(
                    "mail.from",
                    format!("not an e-mail address or `Name <address>`: {e}"),
                );
                None
            }
        };
        let transport = match m.transport.as_deref().unwrap_or("file") {
            "file" => {
                let dir = m
                    .dir
                    .unwrap_or_else(|| "/var/lib/credwatch/mail".to_owned());
                self.path("mail.dir", &dir).map(MailTransport::File)
            }
            "smtp" => self.smtp(s).map(MailTransport::Smtp),
            _ => {
                self.problem("mail.transport", "expected \"file\" or \"smtp\"");
                None
            }
        };
        let templates = m
            .templates_dir
            .map(|d| self.path("mail.templates_dir", &d).ok_or(()))
            .transpose();
        Some(MailConfig {
            from: from?,
            transport: transport?,
            templates_dir: templates.ok()?,
        })
    }

    fn smtp(&mut self, s: raw::Smtp) -> Option<SmtpConfig> {
        let tls = match s.tls.as_deref().unwrap_or("starttls") {
            "starttls" => Some(SmtpTls::StartTls),
            "implicit" => Some(SmtpTls::Implicit),
            "none" => Some(SmtpTls::None),
            _ => {
                self.problem(
                    "smtp.tls",
                    "expected \"starttls\", \"implicit\" or \"none\"",
                );
                None
            }
        };
        let host = s.host.filter(|h| !h.trim().is_empty());
        if host.is_none() {
            self.problem("smtp.host", "missing: mail.transport is \"smtp\"");
        }
        let password = self.secret("smtp.password", s.password, s.password_file.as_deref());
        let credentials = match (s.username, password) {
            (Some(user), Some(Some(pass))) => Some(Some((user, pass))),
            (None, Some(None)) => Some(None),
            (Some(_), Some(None)) => {
                self.problem("smtp.password", "missing: smtp.username is set");
                None
            }
            (None, Some(Some(_))) => {
                self.problem("smtp.username", "missing: a password is set");
                None
            }
            (_, None) => None,
        };
        let timeout = self.duration("smtp.timeout", s.timeout.as_deref(), "30s");
        let tls = tls?;
        let port = s.port.unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        });
        Some(SmtpConfig {
            host: host?,
            port,
            tls,
            credentials: credentials?,
            timeout: timeout?,
        })
    }

    pub(super) fn notices(&mut self, s: raw::Notices) -> Option<NoticesConfig> {
        let digest_window =
            self.duration("notices.digest_window", s.digest_window.as_deref(), "5m");
        let expiring_soon =
            self.duration("notices.expiring_soon", s.expiring_soon.as_deref(), "14d");
        let link_lifetime = self.duration_at_least(
            "notices.link_lifetime",
            s.link_lifetime.as_deref(),
            "30d",
            Duration::from_secs(3600),
            "must be at least 1h: links in e-mails are read hours or days later",
        );
        let connect_link_lifetime = self.duration_at_least(
            "notices.connect_link_lifetime",
            s.connect_link_lifetime.as_deref(),
            "7d",
            Duration::from_secs(3600),
            "must be at least 1h: an invitation is read hours or days later",
        );
        let raw_reminders = s
            .reminders
            .unwrap_or_else(|| vec!["1d".into(), "3d".into(), "7d".into()]);
        let mut reminders = Vec::with_capacity(raw_reminders.len());
        let mut ok = true;
        for (i, r) in raw_reminders.iter().enumerate() {
            match self.duration(&format!("notices.reminders[{i}]"), Some(r), "1d") {
                Some(d) if reminders.last().is_some_and(|last| d <= *last) => {
                    self.problem(
                        &format!("notices.reminders[{i}]"),
                        "reminders are times after the first notice, in increasing order",
                    );
                    ok = false;
                }
                Some(d) => reminders.push(d),
                None => ok = false,
            }
        }
        Some(NoticesConfig {
            digest_window: digest_window?,
            reminders: ok.then_some(reminders)?,
            expiring_soon: expiring_soon?,
            link_lifetime: link_lifetime?,
            connect_link_lifetime: connect_link_lifetime?,
        })
    }
}
