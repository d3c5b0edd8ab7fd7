-- Stints (issue 26): the time each station held an order, from a dispatch until it completed,
-- rejected, or the order moved on; each judged by the station's own deadlines, counted from
-- that dispatch. Recomputed from the trail like the rest of the projection.
CREATE TABLE stints (
    order_id      uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    n             int NOT NULL,
    dispatch_no   int NOT NULL,
    round         int NOT NULL,
    station_id    text NOT NULL,
    dispatched_at timestamptz NOT NULL,
    accept_by     timestamptz NOT NULL,
    assign_by     timestamptz NOT NULL,
    complete_by   timestamptz NOT NULL,
    accepted_at   timestamptz,
    assigned_at   timestamptz,
    completed_at  timestamptz,
    ended_at      timestamptz,
    "end"         text CHECK ("end" IN ('completed', 'rejected', 'moved', 'cancelled')),
    PRIMARY KEY (order_id, n)
);
CREATE INDEX stints_station ON stints (station_id, order_id);
