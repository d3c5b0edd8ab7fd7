-- The loop after the service (issue 14): return visits, send-backs for redo, follow-ups,
-- supervision and reviews in the projection; supervisors bound to stations.

-- Readers: the county-wide reader that was called a supervisor is an evaluator now (bound to
-- the stations of a county, or to none: all); a supervisor is bound to the stations they
-- supervise (一站一督导).
ALTER TABLE readers DROP CONSTRAINT readers_role_check;
ALTER TABLE readers DROP CONSTRAINT readers_check;
UPDATE readers SET role = 'evaluator' WHERE role = 'supervisor';
ALTER TABLE readers ADD COLUMN stations text[];
ALTER TABLE readers ADD CONSTRAINT readers_role_check
    CHECK (role IN ('evaluator', 'supervisor', 'station_manager'));
ALTER TABLE readers ADD CONSTRAINT readers_station_check
    CHECK ((role = 'station_manager') = (station_id IS NOT NULL));
ALTER TABLE readers ADD CONSTRAINT readers_stations_check
    CHECK (CASE role
               WHEN 'supervisor' THEN coalesce(cardinality(stations), 0) > 0
               WHEN 'station_manager' THEN stations IS NULL
               ELSE true
           END);

-- The projection of the loop (recomputed from the trail like the rest).
ALTER TABLE orders
    ADD COLUMN feedback_due_at timestamptz,
    ADD COLUMN send_backs int NOT NULL DEFAULT 0,
    ADD COLUMN supervision_opened_at timestamptz,
    ADD COLUMN supervision_station_id text,
    ADD COLUMN supervision_closed_at timestamptz,
    ADD COLUMN reviewer_id text,
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN review_timeliness smallint,
    ADD COLUMN review_professional_quality smallint,
    ADD COLUMN review_record_completeness smallint;
ALTER TABLE dispatches ADD COLUMN send_back_no int; -- set for a redo

-- A breach is of a stage of a round: 0 the first service, n the redo after send-back n (accept,
-- complete), or, for the stage 'follow_up', the order's n-th follow-up visit owed.
ALTER TABLE breaches ADD COLUMN round int NOT NULL DEFAULT 0;
ALTER TABLE breaches DROP CONSTRAINT breaches_pkey;
ALTER TABLE breaches ADD PRIMARY KEY (order_id, stage, round);

CREATE TABLE feedbacks (
    order_id     uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    n            int NOT NULL,
    at           timestamptz NOT NULL,
    source       text NOT NULL,
    resolved     boolean,
    satisfaction text,
    PRIMARY KEY (order_id, n)
);

CREATE TABLE redos (
    order_id      uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    send_back_no  int NOT NULL,
    dispatch_no   int NOT NULL,
    station_id    text NOT NULL,
    dispatched_at timestamptz NOT NULL,
    reason        text NOT NULL,
    accept_by     timestamptz NOT NULL,
    complete_by   timestamptz NOT NULL,
    accepted_at   timestamptz,
    completed_at  timestamptz,
    PRIMARY KEY (order_id, send_back_no)
);

CREATE TABLE follow_ups (
    order_id   uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    n          int NOT NULL,
    station_id text NOT NULL,
    worker_id  text NOT NULL,
    set_at     timestamptz NOT NULL,
    due_on     date NOT NULL,
    done_on    date,
    done_at    timestamptz,
    superseded_at timestamptz, -- a redo reopened the order before the visit
    PRIMARY KEY (order_id, n)
);

-- The audit's own records, with the free text kept off the trail (the trail has an entry
-- for each, chained with the order's events). One review per order, one close per order.
CREATE TABLE reviews (
    order_id             uuid PRIMARY KEY,
    event_id             uuid NOT NULL UNIQUE,
    station_id           text NOT NULL,
    reviewer_id          text NOT NULL,
    timeliness           smallint NOT NULL CHECK (timeliness BETWEEN 1 AND 5),
    professional_quality smallint NOT NULL CHECK (professional_quality BETWEEN 1 AND 5),
    record_completeness  smallint NOT NULL CHECK (record_completeness BETWEEN 1 AND 5),
    comment              text,
    reviewed_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE supervision_closes (
    order_id      uuid PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    station_id    text NOT NULL,
    supervisor_id text NOT NULL,
    note          text NOT NULL,
    closed_at     timestamptz NOT NULL DEFAULT now()
);

-- Like the trail, the words of reviews and closes are never changed or removed.
CREATE TRIGGER reviews_append_only BEFORE UPDATE OR DELETE ON reviews
    FOR EACH ROW EXECUTE FUNCTION trail_append_only();
CREATE TRIGGER reviews_no_truncate BEFORE TRUNCATE ON reviews
    FOR EACH STATEMENT EXECUTE FUNCTION trail_append_only();
CREATE TRIGGER supervision_closes_append_only BEFORE UPDATE OR DELETE ON supervision_closes
    FOR EACH ROW EXECUTE FUNCTION trail_append_only();
CREATE TRIGGER supervision_closes_no_truncate BEFORE TRUNCATE ON supervision_closes
    FOR EACH STATEMENT EXECUTE FUNCTION trail_append_only();
