-- clickhook schema v15 (SQLite): the burst history is read from the clicks themselves
-- (store::sqlite::clicks::judged_since): one writer gives click ids in commit order, so the
-- judged clicks of a time window are a run of ids. Its own table cost two b-tree inserts and a
-- delete per click.
DROP TABLE IF EXISTS email_clicks;
