-- clickhook schema v6 (PostgreSQL): imports that land whole or not at all.
--
-- An import commits a chunk at a time and journals here what each chunk changed, so that an
-- import that fails (or whose process dies) can be undone, newest entry first: the prospects
-- it created, the values it overwrote (`before`, as the store wrote them), the enrollments it
-- added.
CREATE TABLE imports (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT  NOT NULL,
    campaign_id BIGINT,
    state       TEXT    NOT NULL,
    touched_at  BIGINT  NOT NULL
);

CREATE TABLE import_undo (
    id          BIGSERIAL PRIMARY KEY,
    import_id   BIGINT  NOT NULL,
    -- The prospects first_id..=last_id: one, or a run of ids the import created.
    first_id    BIGINT  NOT NULL,
    last_id     BIGINT  NOT NULL,
    kind        TEXT    NOT NULL,
    before      TEXT
);
CREATE INDEX import_undo_import ON import_undo(import_id, id);
