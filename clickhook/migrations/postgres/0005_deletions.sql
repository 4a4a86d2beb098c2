-- clickhook schema v5 (PostgreSQL): deletions that tracked links must notice.
--
-- A deleted campaign or prospect takes its emails and links with it; every node's link cache
-- must forget them too. Each delete adds a row here; nodes watch the newest id.
CREATE TABLE deletions (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL
);
