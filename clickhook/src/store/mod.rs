//! Storage: the only door to the database, in parts by concern, and its two dialects.
//!
//! - [`parts`]: the interface, one trait per concern (accounts and keys; prospects; campaigns,
//!   emails and links; clicks and settling; delivery; tracking domains), and [`Store`], all of
//!   them together.
//! - [`schedule`]: the hints the click path and the settler exchange through the store.
//! - [`records`]: what goes in and out besides the domain's own types.
//! - [`rows`], [`lists`], [`stats_sql`] and [`sessions_sql`]: how rows become records, and how
//!   list filters, the statistics' reads and rollups and the dashboard's sessions become SQL,
//!   written once for both dialects.
//! - [`sqlite`] and [`postgres`]: the dialects, each a folder with a file per part plus its
//!   connection and writer machinery. A dialect is SQL and transactions: it reads rows, asks
//!   the domain's rules what to change, and applies the answer.
//!
//! Writes that must be durable before the caller answers (clicks above all) are committed in
//! groups: the call returns only after its commit. Time is Unix milliseconds everywhere.

pub mod error;
pub mod lists;
mod open;
pub mod parts;
pub mod postgres;
pub mod records;
pub mod rows;
pub mod schedule;
pub mod schema;
pub mod sessions_sql;
pub mod sqlite;
pub mod stats_sql;

pub use crate::domain::{now_millis, Millis};
pub use error::{StoreError, StoreResult};
pub use open::{backup, open, open_for_serving, Durability};
pub use parts::{
    AccountStore, CampaignStore, ClickStore, DeliveryStore, DomainStore, DynStore, ProspectStore, SessionStore,
    StatsStore, Store,
};
pub use records::*;
pub use schedule::Scheduling;
