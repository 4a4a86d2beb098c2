-- clickhook schema v9 (PostgreSQL): click statistics, rolled up as clicks are released
-- (domain::stats). span 0: quarter hours, 1: UTC days, 2: UTC hours (the series only);
-- bucket: its start in Unix ms.
CREATE TABLE stats_links (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    url         TEXT    NOT NULL,
    human       BIGINT NOT NULL,
    bot         BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, step, url)
);
CREATE TABLE stats_series (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    human       BIGINT NOT NULL,
    bot         BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket)
);
CREATE TABLE stats_reasons (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    reason      TEXT    NOT NULL,
    clicks      BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, reason)
);
-- Prospects with a person's click: a row goes with its prospect, the clicks it made stay
-- counted. Day rows are keyed by prospect first, so that the distinct prospects of a range
-- stream out of the key in order; quarter-hour rows (a range's partial days) by time.
CREATE TABLE stats_clickers_day (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    step        BIGINT NOT NULL,
    prospect_id BIGINT NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    bucket      BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step, prospect_id, bucket)
);
CREATE INDEX stats_clickers_day_prospect ON stats_clickers_day(prospect_id);
CREATE TABLE stats_clickers_quarter (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    bucket      BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    prospect_id BIGINT NOT NULL REFERENCES prospects(id) ON DELETE CASCADE,
    PRIMARY KEY (campaign_id, bucket, step, prospect_id)
);
CREATE INDEX stats_clickers_quarter_prospect ON stats_clickers_quarter(prospect_id);
CREATE TABLE stats_emails (
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    span        BIGINT NOT NULL,
    bucket      BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    sent        BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, span, bucket, step)
);
-- What an older version released and sent is counted by the store's code right after this
-- (store::{sqlite,postgres}::stats::backfill), in the same transaction.
