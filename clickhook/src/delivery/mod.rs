//! Webhook delivery. For now: the safety rules for target URLs, applied at subscribe time.

pub mod target;
