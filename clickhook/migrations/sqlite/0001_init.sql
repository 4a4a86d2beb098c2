-- clickhook schema v1 (SQLite). Times are Unix milliseconds.

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL,
    timezone       TEXT    NOT NULL,
    snippet_labels TEXT    NOT NULL DEFAULT '{}',   -- {"1": "label", ...}
    click_filter   TEXT    NOT NULL DEFAULT '{}',   -- ClickFilter as JSON
    created_at     INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash   TEXT    NOT NULL UNIQUE,             -- SHA-256 of the key, hex; the key itself is never stored
    prefix     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE prospects (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email        TEXT    NOT NULL,
    email_key    TEXT    NOT NULL,                  -- lower(email): one address is one prospect
    first_name   TEXT NOT NULL DEFAULT '', last_name TEXT NOT NULL DEFAULT '', company TEXT NOT NULL DEFAULT '',
    website      TEXT NOT NULL DEFAULT '', linkedin_url TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '', phone TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '',
    city         TEXT NOT NULL DEFAULT '', country TEXT NOT NULL DEFAULT '', industry TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL DEFAULT '',
    snippets     TEXT NOT NULL DEFAULT '["","","","","","","","","","","","","","",""]',
    status       TEXT NOT NULL DEFAULT 'ACTIVE',
    interested   TEXT NOT NULL DEFAULT '',
    imported     TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (account_id, email_key)
);

CREATE TABLE campaigns (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    from_name  TEXT    NOT NULL DEFAULT '',
    mailboxes  TEXT    NOT NULL DEFAULT '[]',       -- ordered JSON array
    steps      TEXT    NOT NULL DEFAULT '[]',       -- ordered JSON array of {type, track_links}; step n is index n-1
    created_at INTEGER NOT NULL
);
CREATE INDEX campaigns_account ON campaigns(account_id);

CREATE TABLE enrollments (
    campaign_id    INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    prospect_id    INTEGER NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    step           INTEGER,
    step_type      TEXT,
    emails_sent    INTEGER NOT NULL DEFAULT 0,
    followup_after INTEGER,
    mailbox        TEXT,
    stopped        INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, prospect_id)
) WITHOUT ROWID;
CREATE INDEX enrollments_prospect ON enrollments(prospect_id);

CREATE TABLE emails (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    prospect_id     INTEGER NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    step            INTEGER NOT NULL,
    mailbox         TEXT    NOT NULL,
    email_no        INTEGER NOT NULL,
    subject         TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT,
    sent_at         INTEGER NOT NULL,
    UNIQUE (campaign_id, idempotency_key)
);
CREATE INDEX emails_prospect ON emails(prospect_id);

CREATE TABLE links (
    email_id INTEGER NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    link_no  INTEGER NOT NULL,
    url      TEXT    NOT NULL,
    honeypot INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (email_id, link_no)
) WITHOUT ROWID;

-- A click row is also the outbox entry of its event. `verdict IS NULL`: not judged yet;
-- `released = 0`: judged, held until its burst window has passed (a later click may still
-- overrule it); releasing it makes the verdict final and writes its event, in one transaction.
-- No foreign keys: the click path writes only this row, and a click outlives a deleted campaign.
-- Its indexes grow at the end only (ids and, per account, ids again): a group commit of many
-- clicks then dirties a handful of pages, not one per click.
CREATE TABLE clicks (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    email_id   INTEGER NOT NULL,
    link_no    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    head       INTEGER NOT NULL DEFAULT 0,
    ip         TEXT,
    user_agent TEXT    NOT NULL DEFAULT '',
    verdict    TEXT,
    reasons    TEXT,
    released   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX clicks_pending ON clicks(id) WHERE verdict IS NULL;
CREATE INDEX clicks_held ON clicks(at) WHERE verdict IS NOT NULL AND released = 0;
CREATE INDEX clicks_account ON clicks(account_id, id);

-- Judged clicks by email, for the burst signal. Written by the settler, not the click path,
-- because its inserts land all over the index.
CREATE TABLE email_clicks (
    click_id INTEGER NOT NULL,
    email_id INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    link_no  INTEGER NOT NULL,
    honeypot INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX email_clicks_email ON email_clicks(email_id, at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    click_id   INTEGER NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    payload    TEXT    NOT NULL                     -- one link_clicked element, exactly as delivered
);

CREATE TABLE subscriptions (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    target_url      TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    secret          TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'active',
    created_at      INTEGER NOT NULL,
    last_success_at INTEGER,
    last_failure_at INTEGER,
    UNIQUE (account_id, event, target_url)
);

CREATE TABLE link_keys (
    id         INTEGER PRIMARY KEY,
    secret     BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
