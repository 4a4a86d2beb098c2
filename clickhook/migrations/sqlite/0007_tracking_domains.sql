-- clickhook schema v7 (SQLite): each account's own tracking domains (domain::tracking_domain).
CREATE TABLE tracking_domains (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    domain      TEXT    NOT NULL UNIQUE,            -- lower case, ASCII, no trailing dot
    status      TEXT    NOT NULL DEFAULT 'pending',
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    checked_at  INTEGER,
    verified_at INTEGER,
    failures    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX tracking_domains_account ON tracking_domains(account_id, id);
CREATE INDEX tracking_domains_checked ON tracking_domains(checked_at);
