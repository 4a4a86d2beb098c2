-- clickhook schema v1 (PostgreSQL). Times are Unix milliseconds.

CREATE TABLE accounts (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT    NOT NULL,
    timezone       TEXT    NOT NULL,
    snippet_labels TEXT    NOT NULL DEFAULT '{}',
    click_filter   TEXT    NOT NULL DEFAULT '{}',
    created_at     BIGINT  NOT NULL
);

CREATE TABLE api_keys (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash   TEXT    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE prospects (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email        TEXT   NOT NULL,
    email_key    TEXT   NOT NULL,
    first_name   TEXT NOT NULL DEFAULT '', last_name TEXT NOT NULL DEFAULT '', company TEXT NOT NULL DEFAULT '',
    website      TEXT NOT NULL DEFAULT '', linkedin_url TEXT NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '',
    title        TEXT NOT NULL DEFAULT '', phone TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '',
    city         TEXT NOT NULL DEFAULT '', country TEXT NOT NULL DEFAULT '', industry TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL DEFAULT '',
    snippets     TEXT NOT NULL DEFAULT '["","","","","","","","","","","","","","",""]',
    status       TEXT NOT NULL DEFAULT 'ACTIVE',
    interested   TEXT NOT NULL DEFAULT '',
    imported     TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (account_id, email_key)
);

CREATE TABLE campaigns (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    from_name  TEXT   NOT NULL DEFAULT '',
    mailboxes  TEXT   NOT NULL DEFAULT '[]',
    steps      TEXT   NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL
);
CREATE INDEX campaigns_account ON campaigns(account_id);

CREATE TABLE enrollments (
    campaign_id    BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    prospect_id    BIGINT NOT NULL REFERENCES prospects(id) ON DELETE CASCADE ON UPDATE CASCADE,
    step           BIGINT,
    step_type      TEXT,
    emails_sent    BIGINT NOT NULL DEFAULT 0,
    followup_after BIGINT,
    mailbox        TEXT,
    stopped        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, prospect_id)
);
CREATE INDEX enrollments_prospect ON enrollments(prospect_id);

CREATE TABLE emails (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL,
    campaign_id     BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    prospect_id     BIGINT NOT NULL REFERENCES prospects(id) ON DELETE CASCADE ON UPDATE CASCADE,
    step            BIGINT NOT NULL,
    mailbox         TEXT   NOT NULL,
    email_no        BIGINT NOT NULL,
    subject         TEXT   NOT NULL DEFAULT '',
    idempotency_key TEXT,
    sent_at         BIGINT NOT NULL,
    UNIQUE (campaign_id, idempotency_key)
);
CREATE INDEX emails_prospect ON emails(prospect_id);

CREATE TABLE links (
    email_id BIGINT  NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    link_no  BIGINT  NOT NULL,
    url      TEXT    NOT NULL,
    honeypot BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (email_id, link_no)
);

CREATE TABLE clicks (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT  NOT NULL,
    email_id   BIGINT  NOT NULL,
    link_no    BIGINT  NOT NULL,
    at         BIGINT  NOT NULL,
    head       BOOLEAN NOT NULL DEFAULT FALSE,
    ip         TEXT,
    user_agent TEXT    NOT NULL DEFAULT '',
    verdict    TEXT,
    reasons    TEXT,
    released   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX clicks_pending ON clicks(id) WHERE verdict IS NULL;
CREATE INDEX clicks_held ON clicks(at) WHERE verdict IS NOT NULL AND NOT released;
CREATE INDEX clicks_account ON clicks(account_id, id);

CREATE TABLE email_clicks (
    id       BIGSERIAL PRIMARY KEY,
    click_id BIGINT  NOT NULL,
    email_id BIGINT  NOT NULL,
    at       BIGINT  NOT NULL,
    link_no  BIGINT  NOT NULL,
    honeypot BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX email_clicks_email ON email_clicks(email_id, at);

CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL,
    click_id   BIGINT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    payload    TEXT   NOT NULL
);

CREATE TABLE subscriptions (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    target_url      TEXT   NOT NULL,
    event           TEXT   NOT NULL,
    secret          TEXT   NOT NULL,
    status          TEXT   NOT NULL DEFAULT 'active',
    created_at      BIGINT NOT NULL,
    last_success_at BIGINT,
    last_failure_at BIGINT,
    UNIQUE (account_id, event, target_url)
);

CREATE TABLE link_keys (
    id         BIGSERIAL PRIMARY KEY,
    secret     BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
