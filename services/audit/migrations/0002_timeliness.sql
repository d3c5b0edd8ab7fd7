-- Nobody changes the history quietly: the trail takes inserts only.
CREATE FUNCTION trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER trail_append_only BEFORE UPDATE OR DELETE ON trail
    FOR EACH ROW EXECUTE FUNCTION trail_append_only();
CREATE TRIGGER trail_no_truncate BEFORE TRUNCATE ON trail
    FOR EACH STATEMENT EXECUTE FUNCTION trail_append_only();

-- The timeliness projection: one row per order, recomputed from the order's trail on every
-- event (services/audit/projection.py); `swdispatch audit rebuild` recomputes all of it.
CREATE TABLE orders (
    order_id      uuid PRIMARY KEY,
    status        text,
    station_id    text,
    worker_id     text,
    category      text,
    urgency       text,
    submitted_at  timestamptz,
    dispatched_at timestamptz,
    received_at   timestamptz,
    accepted_at   timestamptz,
    assigned_at   timestamptz,
    started_at    timestamptz,
    completed_at  timestamptz,
    ended_at      timestamptz, -- completed, closed or cancelled
    dispatch_by   timestamptz,
    accept_by     timestamptz,
    assign_by     timestamptz,
    complete_by   timestamptz,
    dispatches    int NOT NULL,
    rejections    int NOT NULL,
    escalations   int NOT NULL,
    events        int NOT NULL
);
CREATE INDEX orders_open ON orders (station_id) WHERE ended_at IS NULL;
CREATE INDEX orders_submitted ON orders (submitted_at);

CREATE TABLE dispatches (
    order_id           uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    dispatch_no        int NOT NULL,
    station_id         text NOT NULL,
    dispatched_at      timestamptz NOT NULL,
    reason             text,
    received_at        timestamptz,
    rejected_at        timestamptz,
    reject_reason_code text,
    PRIMARY KEY (order_id, dispatch_no)
);

-- Each stage's deadline breach, recorded once, when it is first seen: by the consumer (a stage
-- done late) or by the breach watch (a deadline passing while the stage is still open).
CREATE TABLE breaches (
    order_id    uuid NOT NULL,
    stage       text NOT NULL,
    station_id  text,
    urgency     text,
    deadline    timestamptz NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, stage)
);
