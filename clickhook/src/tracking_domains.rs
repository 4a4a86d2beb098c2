//! Checking accounts' tracking domains in DNS: on request (`POST …/verify`, and when one is
//! added), and again in the background every `--recheck-domains`.
//!
//! The lookups go to a real resolver (hickory): the system's (`/etc/resolv.conf`), or the DNS
//! server `--resolver` names, which the tests run on loopback. What a lookup means for the
//! domain is `domain::tracking_domain`'s rule; this module only asks DNS and stores the answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::domain::now_millis;
use crate::domain::tracking_domain::{DomainName, Lookup, Target, TrackingDomain};
use crate::store::{DynStore, StoreResult};

/// How long one lookup may take before it counts as failed (it then changes nothing).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Domains checked at once by the background re-check.
const CHECKS_AT_ONCE: usize = 8;

pub struct DomainChecker {
    store: DynStore,
    /// `None` when no resolver could be set up (no `/etc/resolv.conf`): every lookup fails.
    resolver: Result<TokioResolver, String>,
    /// `--public-url`'s host, lower case.
    public_host: String,
}

impl DomainChecker {
    /// A checker asking `resolver` (host:port, or an address for port 53), else the system's.
    pub fn new(store: DynStore, public_url: &str, resolver: Option<SocketAddr>) -> Self {
        let public_host = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        DomainChecker { store, resolver: build_resolver(resolver), public_host }
    }

    /// Where domains must point: `--public-url`'s host and, for a name, its addresses now.
    pub async fn target(&self) -> Target {
        let bare = self.public_host.trim_start_matches('[').trim_end_matches(']');
        let addresses = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match self.lookup(bare).await {
                Lookup::Answered { addresses, .. } => addresses,
                _ => Vec::new(),
            },
        };
        Target { host: self.public_host.clone(), addresses }
    }

    /// The domain's CNAME chain and addresses, as the resolver finds them now (no cache).
    pub async fn lookup(&self, name: &str) -> Lookup {
        let resolver = match &self.resolver {
            Ok(r) => r,
            Err(e) => return Lookup::Failed(e.clone()),
        };
        resolver.clear_cache();
        let fqdn = format!("{name}.");
        let (v4, v6) = tokio::join!(
            tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(fqdn.as_str(), RecordType::A)),
            tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(fqdn.as_str(), RecordType::AAAA)),
        );
        let (mut cnames, mut addresses, mut failure) = (Vec::new(), Vec::new(), None);
        for answer in [v4, v6] {
            match answer {
                Ok(Ok(found)) => {
                    for record in found.answers() {
                        match &record.data {
                            RData::CNAME(c) => cnames.push(c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                            RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
                            _ => {}
                        }
                    }
                }
                Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => {}
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(_) => failure = Some(format!("no answer within {}s", LOOKUP_TIMEOUT.as_secs())),
            }
        }
        cnames.dedup();
        match failure {
            _ if !cnames.is_empty() || !addresses.is_empty() => Lookup::Answered { cnames, addresses },
            Some(e) => Lookup::Failed(e),
            None => Lookup::NoRecords,
        }
    }

    /// Checks one domain now and stores what the check made of it.
    pub async fn check(&self, domain: TrackingDomain) -> StoreResult<TrackingDomain> {
        let (lookup, target) = tokio::join!(self.lookup(domain.domain.as_str()), self.target());
        let checked = domain.checked(&lookup, &target, now_millis());
        self.store.record_domain_check(&checked).await?;
        Ok(checked)
    }

    /// Whether `domain` is `--public-url`'s own host.
    pub fn is_public_host(&self, domain: &DomainName) -> bool {
        domain.as_str() == self.public_host
    }

    /// Re-checks every domain not checked for `every`, until the process stops.
    pub async fn recheck(self: Arc<Self>, every: Duration) {
        let tick = (every / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        loop {
            let now = now_millis();
            let due = now - i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            match self.store.domains_due(due, now, 64).await {
                Ok(domains) => {
                    let checks = futures::stream::iter(domains).map(|d| self.check(d)).buffer_unordered(CHECKS_AT_ONCE);
                    let results: Vec<_> = checks.collect().await;
                    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                        tracing::warn!("tracking domain check not stored: {e}");
                    }
                }
                Err(e) => tracing::warn!("tracking domains due for a check not read: {e}"),
            }
            tokio::time::sleep(tick).await;
        }
    }
}

fn build_resolver(at: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match at {
        Some(addr) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            let server = NameServerConfig::new(addr.ip(), true, connections);
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![server]),
                TokioRuntimeProvider::default(),
            );
            let mut options = ResolverOpts::default();
            // Only the server named: the tests' answers, not this machine's hosts file.
            options.use_hosts_file = ResolveHosts::Never;
            *builder.options_mut() = options;
            builder
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("no DNS resolver: {e}"))?,
    };
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.build().map_err(|e| format!("no DNS resolver: {e}"))
}
