//! Which hosts a tracked link is followed on: `--public-url`'s, for every account's links, and
//! each verified tracking domain, for its own account's links only. Any other host gets the
//! same 404 as an unknown token, and nothing is stored.
//!
//! The verified domains are held in memory (the click path never waits on the store for them),
//! read again every [`HOSTS_POLL`] and at once on the node that changed them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{header, HeaderMap, Uri};

use crate::domain::tracking_domain::host_of;
use crate::store::{DynStore, StoreResult};

/// How often a node reads the verified domains again.
pub const HOSTS_POLL: Duration = Duration::from_secs(2);

/// Who may be followed on a request's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAllows {
    /// `--public-url`'s host: every account's links.
    Everyone,
    /// A verified tracking domain: its account's links.
    Account(i64),
    Nobody,
}

pub struct TrackingHosts {
    /// `--public-url`'s host, lower case.
    public: Box<str>,
    verified: RwLock<Arc<HashMap<Box<str>, i64>>>,
}

impl TrackingHosts {
    pub fn new(public_url: &str) -> Self {
        let public = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        TrackingHosts { public: public.into(), verified: RwLock::default() }
    }

    /// The host a request was made to: HTTP/2's authority or HTTP/1's `Host`, or behind a
    /// trusted proxy the `X-Forwarded-Host` it set.
    pub fn allows(&self, uri: &Uri, headers: &HeaderMap, trust_proxy: bool) -> HostAllows {
        let forwarded = trust_proxy.then(|| headers.get("x-forwarded-host")).flatten();
        let raw = match (forwarded, uri.authority()) {
            (Some(v), _) => v.to_str().ok().and_then(|v| v.rsplit(',').next()).map(str::trim),
            (None, Some(a)) => Some(a.as_str()),
            (None, None) => headers.get(header::HOST).and_then(|v| v.to_str().ok()),
        };
        let Some(host) = raw.and_then(host_of) else { return HostAllows::Nobody };
        if host.eq_ignore_ascii_case(&self.public) {
            return HostAllows::Everyone;
        }
        let verified = self.verified.read().unwrap().clone();
        let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            verified.get(host.to_ascii_lowercase().as_str()).copied()
        } else {
            verified.get(host).copied()
        };
        found.map_or(HostAllows::Nobody, HostAllows::Account)
    }

    /// Whether `domain` is verified (for `/tls/ask`).
    pub fn is_verified(&self, domain: &str) -> bool {
        self.verified.read().unwrap().contains_key(domain)
    }

    /// Reads the verified domains again.
    pub async fn refresh(&self, store: &DynStore) -> StoreResult<()> {
        let verified: HashMap<Box<str>, i64> =
            store.verified_domains().await?.into_iter().map(|(d, account)| (d.into_boxed_str(), account)).collect();
        *self.verified.write().unwrap() = Arc::new(verified);
        Ok(())
    }
}
