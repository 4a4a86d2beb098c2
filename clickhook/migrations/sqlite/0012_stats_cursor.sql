-- clickhook schema v12 (SQLite): released clicks are added to the statistics behind the
-- release, a pass at a time in id order, instead of in each release's transaction: a pass
-- writes each busy rollup row once, however many releases touched it. Every released click
-- below `next` is counted. The store's code sets `next` right after this, in the same
-- transaction, and takes back what the releases above it had already counted.
CREATE TABLE stats_cursor (next INTEGER NOT NULL);
