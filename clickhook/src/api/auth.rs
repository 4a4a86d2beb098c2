//! API keys: issuing, hashing, and the [`Auth`] extractor.
//!
//! Woodpecker clients authenticate in several ways, all accepted here: the `x-api-key`
//! header, and HTTP Basic with the key as user name (`base64(KEY)`, `base64(KEY:X)`,
//! `base64(:KEY)`), including one client's `Basic <base64(KEY)>:X` with `:X` outside
//! the base64. Keys are stored only as SHA-256 hashes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::Account;
use crate::error::ApiError;
use crate::store::{DynStore, StoreResult};

/// How long a key→account answer is reused; bounds how late a revocation takes effect.
const TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<String, (Account, Instant)>>,
}

impl AuthCache {
    /// Forget everything: an account changed (its time zone or filter must show at once).
    pub fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }
}

pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key: `ck_` and 32 random alphanumerics (190 bits).
pub fn new_key() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("ck_{}", Alphanumeric.sample_string(&mut rand::rng(), 32))
}

/// The part of a key shown in listings and used to revoke it.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

/// Issues a key for an account; the key itself is returned once and never stored.
pub async fn issue_key(store: &DynStore, account_id: i64) -> StoreResult<String> {
    let key = new_key();
    store.add_api_key(account_id, hash_key(&key), key_prefix(&key)).await?;
    Ok(key)
}

/// The key a request carries, in any of the accepted forms. A request that carries two
/// credentials that disagree (or an `Authorization` header that is not a key) carries none:
/// which one would count is a guess.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    // An empty x-api-key is no credential; one that is not text is a bad one.
    let header_key = match headers.get("x-api-key").map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("")) => None,
        Some(Ok(key)) => Some(Some(key.to_string())),
        Some(Err(_)) => Some(None),
    };
    let basic = headers.get(header::AUTHORIZATION).map(|v| basic_key(v.to_str().ok()?));
    match (header_key, basic) {
        (Some(key), None) | (None, Some(key)) => key,
        (Some(Some(a)), Some(Some(b))) if a == b => Some(a),
        _ => None,
    }
}

/// The key in a Basic `Authorization` value: its user name, or its password when that is empty.
fn basic_key(auth: &str) -> Option<String> {
    let (scheme, cred) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // base64 has no ':', so anything after one is the `:X` some clients append outside it.
    let encoded = cred.trim().split(':').next()?;
    let raw = STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let key = match text.split_once(':') {
        Some((user, _)) if !user.is_empty() => user,
        Some((_, pass)) => pass,
        None => text.as_str(),
    };
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// The account whose key authenticated the request.
pub struct Auth(pub Account);

/// Where the access log finds the account a request authenticated as (0: none).
#[derive(Clone, Default)]
pub struct AuthenticatedAs(pub std::sync::Arc<std::sync::atomic::AtomicI64>);

impl Auth {
    fn noted(account: Account, parts: &Parts) -> Self {
        if let Some(slot) = parts.extensions.get::<AuthenticatedAs>() {
            slot.0.store(account.id, std::sync::atomic::Ordering::Relaxed);
        }
        Auth(account)
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let key = presented_key(&parts.headers).ok_or_else(ApiError::session)?;
        let hash = hash_key(&key);
        if let Some((account, at)) = st.auth.entries.lock().unwrap().get(&hash) {
            if at.elapsed() < TTL {
                return Ok(Auth::noted(account.clone(), parts));
            }
        }
        let account = st.store.account_by_key_hash(&hash).await?.ok_or_else(ApiError::session)?;
        let mut entries = st.auth.entries.lock().unwrap();
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(hash, (account.clone(), Instant::now()));
        Ok(Auth::noted(account, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn every_woodpecker_form() {
        let k = "ck_abc123";
        let b = |s: &str| STANDARD.encode(s);
        assert_eq!(presented_key(&with("x-api-key", k)).as_deref(), Some(k));
        for v in [
            format!("Basic {}", b(k)),
            format!("Basic {}", b(&format!("{k}:X"))),
            format!("basic {}", b(&format!(":{k}"))),
            format!("Basic {}:X", b(k)),
        ] {
            assert_eq!(presented_key(&with("authorization", &v)).as_deref(), Some(k), "{v}");
        }
        assert_eq!(presented_key(&with("authorization", "Bearer x")), None);
        assert_eq!(presented_key(&with("authorization", "Basic !!!")), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
        let both = |a: &str, b: &str| {
            let mut h = with("x-api-key", a);
            h.insert("authorization", b.parse().unwrap());
            presented_key(&h)
        };
        let basic = format!("Basic {}", STANDARD.encode(format!("{k}:")));
        assert_eq!(both(k, &basic).as_deref(), Some(k), "the same key twice");
        assert_eq!(both("ck_other", &basic), None, "two keys that disagree");
        assert_eq!(both(k, "Basic !!!"), None, "a key beside an Authorization that is none");
    }
}
