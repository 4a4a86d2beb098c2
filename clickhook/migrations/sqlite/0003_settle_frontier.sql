-- Clicks are judged in id order and SQLite's one writer commits them in id order, so the
-- unjudged clicks are exactly those from a frontier on. The partial index that found them cost
-- an index insert on every click (the hot path) and a delete on every verdict.
CREATE TABLE settle_frontier (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    next_unjudged INTEGER NOT NULL     -- every click with a smaller id has its verdict
);
INSERT INTO settle_frontier (id, next_unjudged)
VALUES (1, coalesce((SELECT min(id) FROM clicks WHERE verdict IS NULL), (SELECT coalesce(max(id), 0) + 1 FROM clicks)));
DROP INDEX clicks_pending;
