-- clickhook schema v2 (PostgreSQL): webhook delivery.

-- When the click happened; batching windows run on it, so settling does not delay a batch.
ALTER TABLE events ADD COLUMN occurred_at BIGINT  NOT NULL DEFAULT 0;
CREATE INDEX events_account ON events(account_id, id);

-- Each subscription reads the account's events in order; `cursor` is the last one batched.
ALTER TABLE subscriptions ADD COLUMN cursor BIGINT  NOT NULL DEFAULT 0;
-- First failure since the last success; a subscription failing for long enough is disabled.
ALTER TABLE subscriptions ADD COLUMN failing_since BIGINT;

-- One POST: a batch of up to 100 consecutive events of one account for one subscription.
-- Its body is rebuilt from the events (immutable) on every attempt, byte for byte the same;
-- only a test delivery carries its own body.
CREATE TABLE deliveries (
    id              BIGSERIAL PRIMARY KEY,
    msg_id          TEXT    NOT NULL UNIQUE,        -- webhook-id: the same on every attempt
    account_id      BIGINT  NOT NULL,
    subscription_id BIGINT  NOT NULL,
    target_url      TEXT    NOT NULL,
    first_event_id  BIGINT,
    last_event_id   BIGINT,
    event_count     BIGINT  NOT NULL,
    body            TEXT,
    state           TEXT    NOT NULL DEFAULT 'pending',  -- pending, delivered, failed
    tries           BIGINT  NOT NULL DEFAULT 0,          -- failed attempts since created or replayed
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,                             -- in flight on some node until then
    created_at      BIGINT  NOT NULL,
    oldest_event_at BIGINT  NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_subscription ON deliveries(subscription_id, id);
CREATE INDEX deliveries_account ON deliveries(account_id, id);

CREATE TABLE delivery_attempts (
    id          BIGSERIAL PRIMARY KEY,
    delivery_id BIGINT  NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    at          BIGINT  NOT NULL,
    status_code INTEGER,
    error       TEXT,
    latency_ms  BIGINT  NOT NULL,
    response    TEXT    NOT NULL DEFAULT ''              -- the first KB of the response body
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id, id);
