//! credwatch's integration tests: one binary, the real binary and real peers (see `helpers`).

mod helpers;

mod api;
mod api_input;
mod api_loop;
mod browser;
mod catalog;
mod checks;
mod cli;
mod config;
mod connect;
mod counts;
mod credentials;
mod daemon;
mod dev_provider;
mod events;
mod faults;
mod history;
mod keys;
mod monitoring;
mod notices;
mod own_faults;
mod peers;
mod pipelines;
mod reauth;
mod replicas;
mod rotation_faults;
mod store;
mod systemd;
mod under_systemd;
mod webhooks;
