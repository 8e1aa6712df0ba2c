//! credwatch keeps third-party OAuth connections healthy: it refreshes and tests stored tokens,
//! marks dead grants broken, pauses the pipelines that depend on them, and e-mails their owners a
//! reauthorize link. The binary is a thin shell over this library.

pub mod account;
pub mod api;
pub mod catalog;
pub mod check;
pub mod classify;
pub mod cli;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod custody;
pub mod daemon;
pub mod devprovider;
pub mod domain;
pub mod events;
pub mod files;
pub mod http;
pub mod links;
pub mod logging;
pub mod mailer;
pub mod metrics;
pub mod notices;
pub mod outbox;
pub mod pipelines;
pub mod scheduler;
pub mod status;
pub mod store;
pub mod systemd;
pub mod tokens;
pub mod webhooks;
