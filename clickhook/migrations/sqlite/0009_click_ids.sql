-- clickhook schema v9 (SQLite): click ids are never used twice. Without AUTOINCREMENT, SQLite
-- gives a new row the largest id + 1, so deleting the newest clicks (a deleted campaign, or
-- retention pruning everything) handed their ids out again: below the settler's frontier,
-- where no click is looked at again, and onto events and burst history of the old ones.
CREATE TABLE clicks_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
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
INSERT INTO clicks_new (id, account_id, email_id, link_no, at, head, ip, user_agent, verdict, reasons, released)
    SELECT id, account_id, email_id, link_no, at, head, ip, user_agent, verdict, reasons, released FROM clicks;
DROP TABLE clicks;
ALTER TABLE clicks_new RENAME TO clicks;
CREATE INDEX clicks_held ON clicks(at) WHERE verdict IS NOT NULL AND released = 0;
CREATE INDEX clicks_account ON clicks(account_id, id);
-- New ids start past every id the settler has passed, and past every id an event names.
INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('clicks', max(
    coalesce((SELECT max(id) FROM clicks), 0),
    (SELECT next_unjudged - 1 FROM settle_frontier),
    coalesce((SELECT max(click_id) FROM events), 0),
    coalesce((SELECT max(click_id) FROM email_clicks), 0)));
