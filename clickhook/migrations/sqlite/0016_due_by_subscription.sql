-- clickhook schema v16 (SQLite): a claim reads each subscription's due batches through an index
-- of its own pending ones, in the order they are sent, instead of ranking every due batch of
-- every subscription (store::sqlite::delivery::claim_deliveries).
DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(subscription_id, next_attempt_at, id) WHERE state = 'pending';
