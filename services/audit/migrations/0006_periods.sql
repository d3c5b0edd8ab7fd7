-- Periods that stay closed (issue 26): a figure counts in the period of its own event, so a
-- report of a period reads every order with an event in it (or still open), not the orders
-- submitted in it; and closed months are kept as snapshots.
ALTER TABLE orders ADD COLUMN last_event_at timestamptz;
UPDATE orders o SET last_event_at = (SELECT max(occurred_at) FROM trail t WHERE t.order_id = o.order_id);
CREATE INDEX orders_last_event ON orders (last_event_at);

-- One row per month and station (station '' is the center's row): the figures as JSON, made
-- once the month and its feedback window had passed; never changed afterwards.
CREATE TABLE evaluation_snapshots (
    month      date NOT NULL, -- the first day of the month, in SWD_AUDIT_TIMEZONE
    station_id text NOT NULL,
    figures    jsonb NOT NULL,
    made_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (month, station_id)
);
CREATE TRIGGER evaluation_snapshots_append_only BEFORE UPDATE OR DELETE ON evaluation_snapshots
    FOR EACH ROW EXECUTE FUNCTION trail_append_only();
