-- clickhook schema v5 (SQLite): imports that land whole or not at all.
--
-- An import commits a chunk at a time and journals here what each chunk changed, so that an
-- import that fails (or whose process dies) can be undone, newest entry first: the prospects
-- it created, the values it overwrote (`before`, as the store wrote them), the enrollments it
-- added.
CREATE TABLE imports (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    campaign_id INTEGER,
    state       TEXT    NOT NULL,
    touched_at  INTEGER NOT NULL
);

CREATE TABLE import_undo (
    id          INTEGER PRIMARY KEY,
    import_id   INTEGER NOT NULL,
    -- The prospects first_id..=last_id: one, or a run of ids the import created.
    first_id    INTEGER NOT NULL,
    last_id     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    before      TEXT
);
CREATE INDEX import_undo_import ON import_undo(import_id, id);
