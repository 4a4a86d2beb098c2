-- clickhook schema v12 (SQLite): released clicks are added to the statistics behind the
-- release, a pass at a time in id order, instead of in each release's transaction: a pass
-- writes each busy rollup row once, however many releases touched it. Every click below
-- `next` is counted, or not released yet and counted by its release (store::sqlite::stats).
-- Every click there is now was counted by its release (or by the backfill of version 8), and
-- those held now are below the cursor: their release counts them.
CREATE TABLE stats_cursor (next INTEGER NOT NULL);
INSERT INTO stats_cursor (next) SELECT coalesce(max(id), 0) + 1 FROM clicks;
