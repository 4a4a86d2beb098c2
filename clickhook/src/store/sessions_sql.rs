//! The dashboard sessions' SQL, written once for both dialects (`?` placeholders, numbered by
//! PostgreSQL's binder). Only hashes of tokens are stored; a session signed in with an API key
//! names it, and goes when the key is revoked.

/// Forgets what expired: run at every sign-in, so the tables hold only live rows.
pub const PURGE_SESSIONS: &str = "DELETE FROM app_sessions WHERE expires_at < ?";
pub const PURGE_LINKS: &str = "DELETE FROM login_links WHERE expires_at < ?";

pub const ADD_LINK: &str = "INSERT INTO login_links (token_hash, account_id, expires_at) VALUES (?, ?, ?)";

/// A one-time link is used up by the sign-in that uses it.
pub const TAKE_LINK: &str = "DELETE FROM login_links WHERE token_hash = ? AND expires_at >= ? RETURNING account_id";

/// token, csrf, created, expires, key hash: a session only for a key not revoked.
pub const SESSION_FOR_KEY: &str = "INSERT INTO app_sessions (token_hash, account_id, api_key_id, csrf, created_at, \
     expires_at) SELECT ?, account_id, id, ?, ?, ? FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL \
     RETURNING account_id";

/// token, account, csrf, created, expires.
pub const SESSION_FOR_LINK: &str = "INSERT INTO app_sessions (token_hash, account_id, api_key_id, csrf, \
     created_at, expires_at) VALUES (?, ?, NULL, ?, ?, ?)";

/// account, csrf of a live session.
pub const SESSION: &str = "SELECT s.account_id, s.csrf FROM app_sessions s \
     LEFT JOIN api_keys k ON k.id = s.api_key_id \
     WHERE s.token_hash = ? AND s.expires_at >= ? AND (s.api_key_id IS NULL OR k.revoked_at IS NULL)";

pub const END_SESSION: &str = "DELETE FROM app_sessions WHERE token_hash = ?";

/// Revoking a key (account, prefix) ends the sessions signed in with it, in the revoking
/// transaction.
pub const END_KEY_SESSIONS: &str =
    "DELETE FROM app_sessions WHERE api_key_id IN (SELECT id FROM api_keys WHERE account_id = ? AND prefix = ?)";
