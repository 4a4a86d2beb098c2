//! Webhook delivery: target rules, signatures, and the worker that POSTs batches.

pub mod sign;
pub mod target;
pub mod worker;
