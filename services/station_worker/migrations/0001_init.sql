CREATE TABLE staff (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    station_id  text NOT NULL,
    role        text NOT NULL CHECK (role IN ('station_manager', 'social_worker')),
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX staff_station ON staff (station_id);

CREATE TABLE station_orders (
    order_id          uuid PRIMARY KEY,
    station_id        text NOT NULL,
    status            text NOT NULL,
    dispatch_no       integer NOT NULL,
    category          text NOT NULL,
    urgency           text NOT NULL,
    beneficiary_group text NOT NULL,
    township_code     text NOT NULL,
    community_code    text NOT NULL,
    submitted_at      timestamptz NOT NULL,
    dispatch_by       timestamptz NOT NULL,
    accept_by         timestamptz NOT NULL,
    assign_by         timestamptz NOT NULL,
    complete_by       timestamptz NOT NULL,
    case_details      jsonb NOT NULL, -- personal data: only this station's staff see it
    worker_id         text,
    version           integer NOT NULL DEFAULT 1,
    received_at       timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX station_orders_queue ON station_orders (station_id, status, accept_by);

CREATE TABLE order_history (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL,
    station_id  text NOT NULL,
    status      text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    note        text
);
CREATE INDEX order_history_order ON order_history (order_id, id);
