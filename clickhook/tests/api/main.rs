//! The one integration-test binary: real servers on 127.0.0.1, real HTTP.
//!
//! Most tests share one server (`helpers::shared()`) and isolate themselves by creating
//! their own account; tests that need other settings or kill processes start their own.

mod dns;
mod helpers;

mod bad_input;
mod browser;
mod campaigns;
mod cli;
mod clicks;
mod crash;
mod dashboard;
mod delivery;
mod disk;
mod golden;
mod limits;
mod nodes;
mod openapi;
mod outage;
mod prospects;
mod readme;
mod retention;
mod stats;
mod tenancy;
mod tracking_domains;
mod user_agents;
mod webhooks;
