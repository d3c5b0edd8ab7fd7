-- Append-only: each entry's hash covers the previous entry of the same order.
CREATE TABLE trail (
    seq          bigserial PRIMARY KEY,
    order_id     uuid NOT NULL,
    event_id     uuid NOT NULL UNIQUE,
    event_type   text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    station_id   text,
    event        jsonb NOT NULL, -- the redacted event: no personal data
    prev_hash    text NOT NULL,
    hash         text NOT NULL
);
CREATE INDEX trail_order ON trail (order_id, seq);

CREATE TABLE readers (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('supervisor', 'station_manager')),
    station_id  text,
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'station_manager') = (station_id IS NOT NULL))
);
