//! SMTP with every exchange bounded. lettre's pooled transport applies its timeout to the TCP
//! connect alone: a server that accepts and then never answers (no greeting, no answer to
//! DATA) holds a send for ever, and a send cut off by an outer timeout goes back to lettre's
//! pool out of step with the server. So the mailer drives lettre's connection itself: one
//! connection per round of sends, each step under `timeout`, dropped (and so closed) after any
//! failure.
//!
//! It also tells a refused address from a server that refuses everything: only a permanent
//! answer to RCPT TO is about the recipient; a permanent answer to the greeting, MAIL FROM or
//! DATA is the server's (a full mailbox store, a policy on our sender) and is retried.

use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::SendError;
use crate::config::{SmtpConfig, SmtpTls};

pub(super) struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// The connection of the current round of sends, if one is open and in step.
    open: Mutex<Option<AsyncSmtpConnection>>,
}

impl Smtp {
    pub(super) fn new(s: &SmtpConfig) -> Self {
        Self {
            host: s.host.clone(),
            port: s.port,
            tls: s.tls,
            timeout: s.timeout,
            credentials: s.credentials.as_ref().map(|(user, pass)| {
                Credentials::new(user.clone(), pass.expose_secret().to_owned())
            }),
            hello: ClientId::default(),
            open: Mutex::new(None),
        }
    }

    /// Sends one message, over the round's connection or a new one. Every step (connect,
    /// greeting, STARTTLS, AUTH, each command, the body) must finish within the timeout.
    pub(super) async fn send(&self, message: &Message) -> Result<(), SendError> {
        let mut open = self.open.lock().await;
        let mut conn = match open.take() {
            Some(conn) => conn,
            None => step(self.timeout, "connecting", false, self.connect()).await?,
        };
        let sent = Self::transaction(&mut conn, message, self.timeout).await;
        if sent.is_ok() && !conn.has_broken() {
            *open = Some(conn);
        }
        sent
    }

    /// Ends the round: QUIT on the open connection, within the timeout.
    pub(super) async fn close(&self) {
        if let Some(mut conn) = self.open.lock().await.take() {
            let _ = tokio::time::timeout(self.timeout, conn.quit()).await;
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let tls = || TlsParameters::new(self.host.clone());
        let implicit = match self.tls {
            SmtpTls::Implicit => Some(tls()?),
            SmtpTls::StartTls | SmtpTls::None => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await?;
        if self.tls == SmtpTls::StartTls {
            conn.starttls(tls()?, &self.hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(conn)
    }

    /// MAIL FROM, RCPT TO, DATA and the body, each step bounded.
    async fn transaction(
        conn: &mut AsyncSmtpConnection,
        message: &Message,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let envelope = message.envelope();
        let body = message.formatted();
        let mut options = Vec::new();
        let addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.map(|a| a.as_ref()).any(|a: &str| !a.is_ascii()) {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError {
                    permanent: true,
                    message: "the address is not ASCII and the server does not take SMTPUTF8"
                        .into(),
                });
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let from = envelope.from().cloned();
        step(
            timeout,
            "MAIL FROM",
            false,
            conn.command(Mail::new(from, options)),
        )
        .await?;
        for to in envelope.to() {
            let rcpt = Rcpt::new(to.clone(), Vec::new());
            step(timeout, "RCPT TO", true, conn.command(rcpt)).await?;
        }
        step(timeout, "DATA", false, conn.command(Data)).await?;
        step(timeout, "the message", false, conn.message(&body)).await?;
        Ok(())
    }
}

/// One step of an exchange, within `timeout`. A permanent refusal counts as permanent only
/// for a step about the recipient.
async fn step<T>(
    timeout: Duration,
    what: &str,
    about_recipient: bool,
    fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SendError {
            permanent: about_recipient && e.is_permanent(),
            message: format!("smtp: {what}: {e}"),
        }),
        Err(_) => Err(SendError {
            permanent: false,
            message: format!(
                "smtp: no answer to {what} within {}",
                humantime::format_duration(timeout)
            ),
        }),
    }
}
