-- clickhook schema v15 (SQLite): fewer rows and index entries written per click.
--
-- The burst history is read from the clicks themselves (store::sqlite::clicks::judged_since):
-- one writer gives click ids in commit order, so the judged clicks of a time window are a run
-- of ids. Its own table cost two b-tree inserts and a delete per click.
DROP TABLE IF EXISTS email_clicks;

-- An event per click is ensured by the release itself, which writes it only in the transaction
-- that moves its click to released; the unique index on click_id was a third index entry per
-- event that nothing read. SQLite drops an inline UNIQUE only by rebuilding the table.
CREATE TABLE events_new (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    click_id    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    payload     TEXT    NOT NULL,                   -- one link_clicked element, exactly as delivered
    occurred_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO events_new (id, account_id, click_id, created_at, payload, occurred_at)
    SELECT id, account_id, click_id, created_at, payload, occurred_at FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_account ON events(account_id, id);
