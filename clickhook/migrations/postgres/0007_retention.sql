-- clickhook schema v7 (PostgreSQL): pruning delivered batches by age (domain::retention).
CREATE INDEX deliveries_delivered ON deliveries(delivered_at) WHERE state = 'delivered';
