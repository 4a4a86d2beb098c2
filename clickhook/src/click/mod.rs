//! The click path: `GET /c/{token}` → verify → look up → commit → 302.
//!
//! This is the code the product is judged on, so it does only what must happen before the
//! answer: check the token's MAC, find the destination (memory first), and wait for the
//! click's group commit. Judging the click and building its event happen later, in
//! [`settle`], off the request.

pub mod classify;
pub mod holding;
pub mod hosts;
pub mod recent;
pub mod rewrite;
pub mod scanners;
pub mod settle;
pub mod token;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::now_millis;
use crate::error::ApiError;
use crate::metrics::METRICS;
use crate::store::{DynStore, LinkTarget, NewClick, StoreError, StoreResult};
use hosts::HostAllows;
use token::{LinkKeys, TokenError};

/// What the click path needs, and nothing else: one `Arc`, since axum clones the state of
/// every request.
#[derive(Clone)]
pub struct ClickState(Arc<ClickShared>);

pub struct ClickShared {
    pub store: DynStore,
    pub link_keys: Arc<LinkKeys>,
    pub links: LinkCache,
    /// How many deletes of links the cache has seen (`CampaignStore::links_removed`).
    pub links_removed: std::sync::atomic::AtomicI64,
    /// Take the client address from X-Forwarded-For (`--trust-proxy`).
    pub trust_proxy: bool,
    /// Keep full client addresses (`--full-ip`).
    pub full_ip: bool,
    /// The hosts links are followed on.
    pub hosts: hosts::TrackingHosts,
}

impl ClickState {
    pub fn new(shared: ClickShared) -> Self {
        ClickState(Arc::new(shared))
    }

    /// Forgets cached links once links were deleted anywhere: a deleted campaign's, email's or
    /// prospect's links answer 404 on this node once it has looked. The node that deletes
    /// looks at once; the others every [`LINKS_REMOVED_POLL`].
    pub async fn forget_removed_links(&self) -> StoreResult<()> {
        use std::sync::atomic::Ordering;
        let now = self.store.links_removed().await?;
        if self.links_removed.swap(now, Ordering::AcqRel) != now {
            self.links.forget_all();
        }
        Ok(())
    }
}

/// How often a node looks for links deleted on any node.
pub const LINKS_REMOVED_POLL: Duration = Duration::from_millis(250);

impl std::ops::Deref for ClickState {
    type Target = ClickShared;
    fn deref(&self) -> &ClickShared {
        &self.0
    }
}

/// A tracked link as the click path uses it: the stored target and its ready-made Location.
pub struct CachedLink {
    pub target: LinkTarget,
    /// `None` when the stored URL cannot be a Location header (the click is still refused).
    pub location: Option<HeaderValue>,
}

impl CachedLink {
    fn new(target: LinkTarget) -> Self {
        let location = HeaderValue::from_str(&target.url)
            .ok()
            .or_else(|| url::Url::parse(&target.url).ok().and_then(|u| HeaderValue::from_str(u.as_str()).ok()));
        CachedLink { target, location }
    }
}

/// Multiply-shift hashing of (email, link): keys are ours, not an attacker's choice of
/// strings, and SipHash costs more than the rest of the lookup.
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Generation = HashMap<(i64, i64), Arc<CachedLink>, std::hash::BuildHasherDefault<KeyHasher>>;

/// Tracked links by (email, link number). Links never change, so entries never go stale;
/// two generations bound memory and keep the links in use.
pub struct LinkCache {
    generations: Mutex<(Generation, Generation)>,
    capacity: usize,
}

impl LinkCache {
    pub fn new(capacity: usize) -> Self {
        LinkCache {
            generations: Mutex::new((Generation::default(), Generation::default())),
            capacity: capacity.max(16),
        }
    }

    fn get(&self, key: (i64, i64)) -> Option<Arc<CachedLink>> {
        let mut g = self.generations.lock().unwrap();
        if let Some(v) = g.0.get(&key) {
            return Some(v.clone());
        }
        let v = g.1.remove(&key)?;
        self.insert_locked(&mut g, key, v.clone());
        Some(v)
    }

    /// Forgets every link: some were deleted (see `forget_removed_links`).
    pub fn forget_all(&self) {
        let mut g = self.generations.lock().unwrap();
        *g = Default::default();
    }

    fn insert(&self, key: (i64, i64), v: Arc<CachedLink>) {
        let mut g = self.generations.lock().unwrap();
        self.insert_locked(&mut g, key, v);
    }

    fn insert_locked(&self, g: &mut (Generation, Generation), key: (i64, i64), v: Arc<CachedLink>) {
        if g.0.len() >= self.capacity {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(key, v);
    }
}

const NOT_FOUND_PAGE: &str = "<!doctype html><meta charset=utf-8><title>Link not found</title>\
    <p>This link is not valid. If you copied it, check that it is complete.</p>\n";

fn not_found(headers: &HeaderMap) -> Response {
    METRICS.invalid_tokens.inc();
    let error = ApiError::new(
        StatusCode::NOT_FOUND,
        "E_LINK_NOT_FOUND",
        "This link is not valid. If you copied it, check that it is complete.",
    );
    refusal(headers, NOT_FOUND_PAGE, error)
}

/// A refused click: a page for a browser (it asks for HTML), the API's envelope for a program.
fn refusal(headers: &HeaderMap, page: &'static str, error: ApiError) -> Response {
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    let mut res = if wants_html { html(error.status, page) } else { error.into_response() };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn html(status: StatusCode, body: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The user agent as stored: at most 512 bytes, cut on a character boundary; lossy if not UTF-8.
fn user_agent(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Zeroes the host part of an address: the last IPv4 octet, the last 80 bits of IPv6.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 80))),
    }
}

/// The client's address: the peer, or behind a trusted proxy the last hop it appended.
fn client_ip(st: &ClickShared, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if st.trust_proxy {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

/// The link a token names: `None` for a token that names none, an error when the store cannot say.
async fn resolve(st: &ClickShared, token: &str) -> Result<Option<Arc<CachedLink>>, StoreError> {
    let link = match st.link_keys.verify(token) {
        Ok(l) => l,
        // A key created on another node since we last looked: re-read keys, at most once a second.
        Err(TokenError::UnknownKey(_)) if st.link_keys.refresh_if_stale(Duration::from_secs(1)).await => {
            match st.link_keys.verify(token) {
                Ok(l) => l,
                Err(_) => return Ok(None),
            }
        }
        Err(_) => return Ok(None),
    };
    let key = (link.email_id, link.link_no);
    if let Some(t) = st.links.get(key) {
        return Ok(Some(t));
    }
    let Some(target) = st.store.link_target(link.email_id, link.link_no).await? else { return Ok(None) };
    let target = Arc::new(CachedLink::new(target));
    st.links.insert(key, target.clone());
    Ok(Some(target))
}

/// The store cannot take the click now: the client may try again, and nothing was redirected.
fn unavailable(headers: &HeaderMap) -> Response {
    let page = "<!doctype html><p>Please try again in a moment.</p>\n";
    let mut res = refusal(headers, page, ApiError::unavailable());
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// `GET|HEAD /c/{token}`.
///
/// It takes the request whole: axum's `HeaderMap`, `Uri` and `Method` extractors clone them,
/// and on this path those clones cost more than the routing.
pub async fn follow(State(st): State<ClickState>, req: Request) -> Response {
    let started = Instant::now();
    let (method, uri, headers) = (req.method(), req.uri(), req.headers());
    // The raw path, not a decoded one: a percent-encoded token is not the token.
    let token = uri.path().strip_prefix("/c/").unwrap_or_default();
    let allows = st.hosts.allows(uri, headers, st.trust_proxy);
    if allows == HostAllows::Nobody {
        return not_found(headers);
    }
    let link = match resolve(&st, token).await {
        Ok(Some(link)) => link,
        Ok(None) => return not_found(headers),
        Err(e) => {
            tracing::warn!("link not looked up: {e}");
            METRICS.click_failures.inc();
            return unavailable(headers);
        }
    };
    let target = &link.target;
    if allows != HostAllows::Everyone && allows != HostAllows::Account(target.account_id) {
        return not_found(headers);
    }
    if !target.honeypot && link.location.is_none() {
        return not_found(headers);
    }
    // Served with connect info (startup); a missing one is a wiring bug, not a client's doing.
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let ip = client_ip(&st, peer, headers);
    let ip = if st.full_ip { ip.to_canonical() } else { anonymize(ip) };
    let user_agent = headers.get(header::USER_AGENT).map(|v| user_agent(v.as_bytes())).unwrap_or_default();
    let click = NewClick {
        account_id: target.account_id,
        email_id: target.email_id,
        link_no: target.link_no,
        at: now_millis(),
        head: method == Method::HEAD,
        ip: Some(ip.to_string()),
        user_agent,
    };
    if let Err(e) = st.store.record_click(click).await {
        // Never redirect a click that was not stored.
        tracing::warn!("click not stored: {e}");
        METRICS.click_failures.inc();
        return unavailable(headers);
    }
    METRICS.clicks_recorded.inc();
    let res = match &link.location {
        Some(location) if !target.honeypot => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::FOUND;
            res.headers_mut().insert(header::LOCATION, location.clone());
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        // The honeypot: recorded, and answered with an empty page rather than sent anywhere.
        _ => html(StatusCode::OK, "<!doctype html><title></title>\n"),
    };
    METRICS.redirect_seconds.observe(started.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymizes() {
        assert_eq!(anonymize("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(anonymize("::ffff:203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(anonymize("2001:db8:aaaa:bbbb:cccc::1".parse().unwrap()).to_string(), "2001:db8:aaaa::");
    }
}
