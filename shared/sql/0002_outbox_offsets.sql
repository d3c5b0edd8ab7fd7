-- Where each event landed, so the relay notices when the broker has lost what it acknowledged.
ALTER TABLE outbox ADD COLUMN kafka_partition integer, ADD COLUMN kafka_offset bigint;
CREATE INDEX outbox_recently_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
