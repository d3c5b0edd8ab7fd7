CREATE TABLE stations (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    township_code text NOT NULL,
    active        boolean NOT NULL DEFAULT true
);

CREATE TABLE communities (
    code          text PRIMARY KEY,
    name          text NOT NULL,
    township_code text NOT NULL
);

-- Which station serves a community.
CREATE TABLE coverage (
    community_code text PRIMARY KEY REFERENCES communities (code),
    station_id     text NOT NULL REFERENCES stations (id)
);

CREATE TABLE integrations (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    key_hash    text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE orders (
    id                uuid PRIMARY KEY,
    integration_id    text NOT NULL REFERENCES integrations (id),
    external_id       text NOT NULL,
    request_hash      text NOT NULL,
    status            text NOT NULL,
    station_id        text REFERENCES stations (id),
    dispatch_no       integer NOT NULL DEFAULT 0,
    category          text NOT NULL,
    urgency           text NOT NULL,
    beneficiary_group text NOT NULL,
    township_code     text NOT NULL,
    community_code    text NOT NULL,
    reported_at       timestamptz NOT NULL,
    submitted_at      timestamptz NOT NULL,
    dispatch_by       timestamptz NOT NULL,
    accept_by         timestamptz NOT NULL,
    assign_by         timestamptz NOT NULL,
    complete_by       timestamptz NOT NULL,
    received_at       timestamptz,
    callback_url      text,
    case_details      jsonb NOT NULL, -- personal data: never logged, sent only to the station
    version           integer NOT NULL DEFAULT 1,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (integration_id, external_id)
);
CREATE INDEX orders_status ON orders (status, station_id);

-- Public status changes, as an integration sees them.
CREATE TABLE order_timeline (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES orders (id),
    status      text NOT NULL,
    station_id  text,
    at          timestamptz NOT NULL,
    reason      text
);
CREATE INDEX order_timeline_order ON order_timeline (order_id, id);
