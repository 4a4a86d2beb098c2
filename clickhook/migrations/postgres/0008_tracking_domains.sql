-- clickhook schema v8 (PostgreSQL): each account's own tracking domains (domain::tracking_domain).
CREATE TABLE tracking_domains (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT  NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    domain      TEXT    NOT NULL UNIQUE,            -- lower case, ASCII, no trailing dot
    status      TEXT    NOT NULL DEFAULT 'pending',
    is_default  BOOLEAN NOT NULL DEFAULT false,
    created_at  BIGINT  NOT NULL,
    checked_at  BIGINT,
    verified_at BIGINT,
    failures    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX tracking_domains_account ON tracking_domains(account_id, id);
CREATE INDEX tracking_domains_checked ON tracking_domains(checked_at);
