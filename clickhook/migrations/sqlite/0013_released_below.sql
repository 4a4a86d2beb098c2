-- clickhook schema v13 (SQLite): the settler holds judged clicks in memory until their release,
-- their rows unjudged, so released clicks are no longer all below the judging frontier. A
-- statistics query counts every released click up to `released_below`, which every release
-- moves past the clicks it released (store::sqlite::stats).
ALTER TABLE settle_frontier ADD COLUMN released_below INTEGER NOT NULL DEFAULT 0;
UPDATE settle_frontier SET released_below = (SELECT coalesce(max(id), 0) + 1 FROM clicks WHERE released = 1);
