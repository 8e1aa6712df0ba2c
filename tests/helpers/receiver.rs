//! A real webhook receiver: `tests/peers/webhook_receiver.py`, which verifies signatures with
//! the `standardwebhooks` package from PyPI, not with our code.

use std::time::Duration;

use tokio::process::{Child, Command};

use super::peers::{free_port, peers_dir};
use super::wait_until;

/// The signing secret the tests configure (whsec_ and base64 of 32 bytes).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3bFXv0QHKSc=";

pub struct Receiver {
    _child: Child,
    pub port: u16,
    http: reqwest::Client,
}

impl Receiver {
    pub async fn spawn() -> Self {
        Self::spawn_on(free_port()).await
    }

    /// On a given port, to come back where a stopped one was.
    pub async fn spawn_on(port: u16) -> Self {
        let python = peers_dir().join(".venv/bin/python");
        let child = Command::new(python)
            .arg(peers_dir().join("webhook_receiver.py"))
            .arg(port.to_string())
            .arg(SECRET)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the webhook receiver (tests/peers/setup installs its package)");
        wait_until(
            "the receiver to listen",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        Self {
            _child: child,
            port,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// "ok", "fail" (500) or "hang" (no answer for 30 s).
    pub async fn set_mode(&self, mode: &str) {
        self.http
            .post(format!("http://127.0.0.1:{}/mode", self.port))
            .body(mode.to_owned())
            .send()
            .await
            .expect("set the receiver's mode");
    }

    /// Every delivery it accepted (signature verified), in arrival order: (webhook-id, body).
    pub async fn received(&self) -> Vec<(String, serde_json::Value)> {
        self.deliveries()
            .await
            .into_iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_owned(),
                    r["body"].clone(),
                )
            })
            .collect()
    }

    /// The accepted deliveries as sent: id, body, raw, timestamp, signature.
    pub async fn deliveries(&self) -> Vec<serde_json::Value> {
        self.http
            .get(format!("http://127.0.0.1:{}/received", self.port))
            .send()
            .await
            .expect("ask the receiver")
            .json()
            .await
            .expect("its answer")
    }

    /// Verified deliveries that arrived, however they were answered.
    pub async fn hits(&self) -> u64 {
        self.http
            .get(format!("http://127.0.0.1:{}/hits", self.port))
            .send()
            .await
            .expect("ask the receiver")
            .text()
            .await
            .expect("its answer")
            .trim()
            .parse()
            .expect("a count")
    }

    /// Whether the receiver's library accepts `body` with these headers.
    pub async fn verifies(&self, body: &[u8], headers: &[(&str, &str)]) -> bool {
        let mut request = self
            .http
            .post(format!("http://127.0.0.1:{}/verify", self.port))
            .body(body.to_vec());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("verify").status() == 204
    }
}

/// A `[[webhooks]]` section delivering to `url` (every type unless `events` names some).
pub fn config(name: &str, url: &str, events: &[&str]) -> String {
    let events: Vec<String> = events.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "\n[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n\
         events = [{}]\ntimeout = \"2s\"\n",
        events.join(", ")
    )
}
