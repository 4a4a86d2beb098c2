-- clickhook schema v4 (SQLite): deletions that tracked links must notice.
--
-- A deleted campaign or prospect takes its emails and links with it; every node's link cache
-- must forget them too. Each delete adds a row here; nodes watch the newest id.
CREATE TABLE deletions (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL
);
