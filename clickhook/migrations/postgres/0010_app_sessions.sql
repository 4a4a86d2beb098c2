-- The dashboard's sign-ins (app::session). Only SHA-256 hashes of their tokens are stored.

CREATE TABLE app_sessions (
    token_hash TEXT    PRIMARY KEY,
    account_id BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- The API key signed in with; NULL for a one-time login link. Revoking it ends the session.
    api_key_id BIGINT  REFERENCES api_keys(id) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX app_sessions_key ON app_sessions (api_key_id);

CREATE TABLE login_links (
    token_hash TEXT    PRIMARY KEY,
    account_id BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    expires_at BIGINT  NOT NULL
);
