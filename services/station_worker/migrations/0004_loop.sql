-- The closed loop: redo dispatches (发回重办) and follow-up tasks (跟进回访) with their visits.

-- The send-back the order's dispatch redoes: {send_back_no, reason, resolved, satisfaction};
-- NULL for an order never sent back.
ALTER TABLE station_orders ADD COLUMN redo jsonb;

-- One follow-up task per order: opened by a completion with follow_up_by, ended by the last
-- visit or superseded by a redo dispatch (a later completion opens a new one).
CREATE TABLE follow_ups (
    order_id      uuid PRIMARY KEY REFERENCES station_orders (order_id),
    station_id    text NOT NULL,
    worker_id     text NOT NULL,
    due_on        date NOT NULL,
    completed_on  date NOT NULL,
    plan          text, -- personal data: the station's managers and the task's worker only
    opened_at     timestamptz NOT NULL,
    ended_at      timestamptz,
    end_reason    text CHECK (end_reason IN ('done', 'superseded')),
    version       integer NOT NULL DEFAULT 1,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX follow_ups_open ON follow_ups (station_id, due_on, order_id) WHERE ended_at IS NULL;

CREATE TABLE follow_up_visits (
    id                bigserial PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES station_orders (order_id),
    station_id        text NOT NULL,
    worker_id         text NOT NULL,
    visited_on        date NOT NULL,
    summary           text, -- personal data, erased with the case details
    next_follow_up_by date,
    actor             text NOT NULL,
    at                timestamptz NOT NULL
);
CREATE INDEX follow_up_visits_order ON follow_up_visits (order_id, id);
