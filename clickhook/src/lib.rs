//! clickhook: tracked links, honest click records, and Woodpecker-compatible
//! `link_clicked` webhooks, in one self-hosted binary.
//!
//! # Layout
//!
//! - [`domain`]: newtypes and enums that parse input at the edge (emails, statuses, zones).
//! - [`store`]: the one storage interface, [`store::Store`], and its SQLite implementation
//!   (group commit on one writer thread).
//! - [`event`]: builds the `link_clicked` element exactly as Woodpecker documents it.
//! - [`click`]: the hot path (`/c/{token}` → 302), tokens, link rewriting, bot verdicts and
//!   the settler that turns committed clicks into events.
//! - [`api`]: one module per REST resource, the auth extractor and the OpenAPI document.
//! - [`delivery`]: the delivery worker (batches, signatures, retries) and target rules.
//! - [`receive`]: `clickhook receive`, a receiver for trying webhooks out.
//! - [`import`]: streaming CSV import, shared by the CLI and the API.
//! - [`startup`]: wires it together; tests start it on port 0.
//! - [`metrics`], [`config`], [`error`]: counters, settings, the one API error type.

pub mod api;
pub mod click;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod event;
pub mod import;
pub mod metrics;
pub mod receive;
pub mod startup;
pub mod store;
