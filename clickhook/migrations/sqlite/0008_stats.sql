-- clickhook schema v8 (SQLite): click statistics, rolled up as clicks are released
-- (domain::stats). span 0: quarter hours, 1: UTC days, 2: UTC hours (the series only);
-- bucket: its start in Unix ms.
CREATE TABLE stats_links (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    url         TEXT    NOT NULL,
    human       INTEGER NOT NULL,
    bot         INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, step, url)
) WITHOUT ROWID;
CREATE TABLE stats_series (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    human       INTEGER NOT NULL,
    bot         INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket)
) WITHOUT ROWID;
CREATE TABLE stats_reasons (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, reason)
) WITHOUT ROWID;
-- Prospects with a person's click: a row goes with its prospect, the clicks it made stay
-- counted. Day rows are keyed by prospect first, so that the distinct prospects of a range
-- stream out of the key in order; quarter-hour rows (a range's partial days) by time.
CREATE TABLE stats_clickers_day (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    prospect_id INTEGER NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    bucket      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, step, prospect_id, bucket)
) WITHOUT ROWID;
CREATE INDEX stats_clickers_day_prospect ON stats_clickers_day(prospect_id);
CREATE TABLE stats_clickers_quarter (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    bucket      INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    prospect_id INTEGER NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, bucket, step, prospect_id)
) WITHOUT ROWID;
CREATE INDEX stats_clickers_quarter_prospect ON stats_clickers_quarter(prospect_id);
CREATE TABLE stats_emails (
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    sent        INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, step)
) WITHOUT ROWID;
-- What an older version released and sent is counted by the store's code right after this
-- (store::{sqlite,postgres}::stats::backfill), in the same transaction.
