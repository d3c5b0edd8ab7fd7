-- How far every consumer group that reads a topic had read each partition when the relay last
-- looked: after the broker loses data, the rows from there on go out again.
CREATE TABLE outbox_read (
    topic text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    PRIMARY KEY (topic, kafka_partition)
);
