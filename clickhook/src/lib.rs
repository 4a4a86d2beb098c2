//! clickhook: tracked links, honest click records, and Woodpecker-compatible
//! `link_clicked` webhooks, in one self-hosted binary.
//!
//! # Layout (arrows point down)
//!
//! - [`startup`]: wires it together; tests start it on port 0. [`http`]: the listener, with
//!   timeouts and a cap on connections.
//! - [`api`]: one module per REST resource, the auth extractor and the OpenAPI document.
//! - [`delivery`]: the delivery worker (batches, signatures, retries) and target rules.
//! - [`click`]: the hot path (`/c/{token}` → 302) with its own state, tokens, link rewriting,
//!   bot verdicts and the settler that turns committed clicks into events.
//! - [`event`]: builds the `link_clicked` element exactly as Woodpecker documents it.
//! - [`import`]: streaming CSV import, shared by the CLI and the API.
//! - [`tracking_domains`]: accounts' own link domains, checked in DNS; [`retention`]: pruning.
//! - [`store`]: the storage interface in parts, and its SQLite and PostgreSQL dialects.
//! - [`domain`]: types that parse at the edge, and the rules the stores apply.
//! - [`receive`]: `clickhook receive`, a receiver for trying webhooks out.
//! - [`cli`], [`metrics`], [`config`], [`error`]: the command line, counters, settings, the one API
//!   error type.

pub mod api;
pub mod app;
pub mod cli;
pub mod click;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod event;
pub mod http;
pub mod import;
pub mod metrics;
pub mod receive;
pub mod retention;
pub mod startup;
pub mod store;
pub mod tracking_domains;
