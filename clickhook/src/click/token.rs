//! Tracked-link tokens: `base64url(varint key_id ‖ varint email_id ‖ varint link_no ‖ mac96)`.
//!
//! The MAC is HMAC-SHA256 under a server key, truncated to 96 bits. The token names
//! the sent email and which of its links it is; the destination stays in the store,
//! so nothing in a request can choose where the redirect goes. Encoding is canonical
//! (minimal varints, no base64 padding or stray bits): each link has exactly one token.
//! Keys live in the store so every node verifies every link; the newest key signs.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::{DynStore, LinkKey, StoreResult};

type HmacSha256 = Hmac<Sha256>;

pub const MAC_LEN: usize = 12;
/// Longest token accepted; anything longer is rejected before decoding.
pub const MAX_TOKEN_LEN: usize = 47;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRef {
    pub email_id: i64,
    pub link_no: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// Signed by a key this node does not hold (removed, or newer than its last refresh).
    UnknownKey(u64),
    BadMac,
}

struct Key {
    id: u64,
    /// Keyed once; cloning the state saves rehashing the key on every click.
    mac: HmacSha256,
}

pub struct LinkKeys {
    store: DynStore,
    keys: RwLock<Vec<Key>>,
    last_refresh: std::sync::Mutex<Instant>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a minimal LEB128 varint; rejects over-long or non-minimal encodings.
fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            return Some((v, i + 1));
        }
    }
    None
}

fn build_key(k: &LinkKey) -> Option<Key> {
    Some(Key { id: u64::try_from(k.id).ok()?, mac: HmacSha256::new_from_slice(&k.secret).ok()? })
}

impl LinkKeys {
    /// Loads the keys; creates the first one on a fresh database.
    pub async fn load(store: DynStore) -> StoreResult<Arc<Self>> {
        let stored = store.link_keys_or_first(new_secret()).await?;
        Ok(Arc::new(LinkKeys {
            keys: RwLock::new(stored.iter().filter_map(build_key).collect()),
            store,
            last_refresh: std::sync::Mutex::new(Instant::now()),
        }))
    }

    /// Re-reads keys from the store (a rotation or removal made on another node).
    pub async fn refresh(&self) -> StoreResult<()> {
        let stored = self.store.link_keys().await?;
        *self.keys.write().unwrap() = stored.iter().filter_map(build_key).collect();
        *self.last_refresh.lock().unwrap() = Instant::now();
        Ok(())
    }

    /// Refreshes unless that was done within `min_gap`; a flood of forged key ids costs one read per gap.
    pub async fn refresh_if_stale(&self, min_gap: Duration) -> bool {
        {
            let mut last = self.last_refresh.lock().unwrap();
            if last.elapsed() < min_gap {
                return false;
            }
            *last = Instant::now();
        }
        self.refresh().await.is_ok()
    }

    pub fn sign(&self, link: LinkRef) -> String {
        let keys = self.keys.read().unwrap();
        let key = keys.last().expect("at least one link key is loaded");
        let mut buf = Vec::with_capacity(32);
        put_varint(&mut buf, key.id);
        put_varint(&mut buf, link.email_id as u64);
        put_varint(&mut buf, link.link_no as u64);
        let mut mac = key.mac.clone();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    pub fn verify(&self, token: &str) -> Result<LinkRef, TokenError> {
        if token.len() > MAX_TOKEN_LEN || token.len() < 16 {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| TokenError::Malformed)?;
        if raw.len() <= MAC_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = raw.split_at(raw.len() - MAC_LEN);
        let (key_id, a) = get_varint(body).ok_or(TokenError::Malformed)?;
        let (email_id, b) = get_varint(&body[a..]).ok_or(TokenError::Malformed)?;
        let (link_no, c) = get_varint(&body[a + b..]).ok_or(TokenError::Malformed)?;
        if a + b + c != body.len() || email_id > i64::MAX as u64 || link_no > i64::MAX as u64 {
            return Err(TokenError::Malformed);
        }
        let keys = self.keys.read().unwrap();
        let key = keys.iter().find(|k| k.id == key_id).ok_or(TokenError::UnknownKey(key_id))?;
        let mut mac = key.mac.clone();
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| TokenError::BadMac)?;
        Ok(LinkRef { email_id: email_id as i64, link_no: link_no as i64 })
    }
}

pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut s = vec![0u8; 32];
    rand::rng().fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_canonical() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Some((v, b.len())));
        }
        assert_eq!(get_varint(&[0x80, 0x00]), None, "non-minimal zero");
        assert_eq!(get_varint(&[0x81, 0x80, 0x00]), None, "trailing zero group");
        assert_eq!(get_varint(&[0xff; 11]), None);
    }

    /// Keys of a store of their own, with a second key rotated in (both verify, the newer signs).
    fn keys() -> (Arc<LinkKeys>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let keys = rt.block_on(async {
            let store = crate::store::open(dir.path().join("k.db").to_str().unwrap()).await.unwrap();
            store.add_link_key(new_secret()).await.unwrap();
            LinkKeys::load(store).await.unwrap()
        });
        (keys, dir)
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            /// Any string either verifies to the link it was made for, or is refused: a string
            /// that verifies is exactly the token signed for its link (one token per link).
            #[test]
            fn any_string_verifies_only_as_its_own_token(s in ".{0,60}|[A-Za-z0-9_-]{16,47}") {
                let (keys, _dir) = keys_once();
                if let Ok(link) = keys.verify(&s) {
                    prop_assert_eq!(keys.sign(link), s);
                }
            }

            #[test]
            fn signed_links_verify_and_altered_tokens_do_not(
                email_id in 0..i64::MAX,
                link_no in 0..i64::MAX,
                at in any::<prop::sample::Index>(),
                with in "[A-Za-z0-9_-]",
            ) {
                let (keys, _dir) = keys_once();
                let link = LinkRef { email_id, link_no };
                let token = keys.sign(link);
                prop_assert_eq!(keys.verify(&token), Ok(link));
                let i = at.index(token.len());
                let mut altered = token.clone();
                altered.replace_range(i..i + 1, &with);
                if altered != token {
                    prop_assert!(keys.verify(&altered).is_err(), "{} verified", altered);
                }
            }
        }

        fn keys_once() -> &'static (Arc<LinkKeys>, tempfile::TempDir) {
            static KEYS: std::sync::OnceLock<(Arc<LinkKeys>, tempfile::TempDir)> = std::sync::OnceLock::new();
            KEYS.get_or_init(keys)
        }
    }
}
