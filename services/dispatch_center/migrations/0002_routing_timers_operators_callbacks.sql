-- Routing: category overrides per township and an ordered fallback list per community.
CREATE TABLE coverage_overrides (
    township_code text NOT NULL,
    category      text NOT NULL,
    station_id    text NOT NULL REFERENCES stations (id),
    PRIMARY KEY (township_code, category)
);

CREATE TABLE coverage_fallbacks (
    community_code text NOT NULL REFERENCES communities (code),
    position       integer NOT NULL,
    station_id     text NOT NULL REFERENCES stations (id),
    PRIMARY KEY (community_code, position),
    UNIQUE (community_code, station_id)
);

-- Durable timers and redispatch state: all due times live in the row, so a restart loses none.
ALTER TABLE orders
    ADD COLUMN dispatch_event_id  uuid,          -- the current dispatch, for resend_of
    ADD COLUMN next_resend_at     timestamptz,   -- unacknowledged dispatch: re-send then
    ADD COLUMN resends            integer NOT NULL DEFAULT 0,
    ADD COLUMN accept_due_at      timestamptz,   -- the current dispatch escalates then
    ADD COLUMN redispatches       integer NOT NULL DEFAULT 0,
    ADD COLUMN tried_stations     text[] NOT NULL DEFAULT '{}',
    ADD COLUMN awaiting_operator  boolean NOT NULL DEFAULT false,
    ADD COLUMN hold_reason        text;
CREATE INDEX orders_resend_due ON orders (next_resend_at) WHERE next_resend_at IS NOT NULL;
CREATE INDEX orders_accept_due ON orders (accept_due_at) WHERE accept_due_at IS NOT NULL;
CREATE INDEX orders_listing ON orders (submitted_at DESC, id DESC);

ALTER TABLE order_timeline ADD COLUMN actor text;

-- Integrations: a per-integration rate limit and the secret that signs status callbacks
-- (kept in clear: the center must compute the HMAC with it).
ALTER TABLE integrations
    ADD COLUMN rate_limit_per_minute integer,
    ADD COLUMN callback_secret text;

-- Fixed one-minute windows, shared by every replica of the center.
CREATE TABLE rate_limit_windows (
    integration_id text NOT NULL,
    window_start   timestamptz NOT NULL,
    requests       integer NOT NULL,
    PRIMARY KEY (integration_id, window_start)
);

CREATE TABLE operators (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('operator', 'viewer')),
    token_hash  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Changes to stations, coverage and integrations: who did what, and why.
CREATE TABLE admin_actions (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    subject     text NOT NULL,
    reason      text,
    details     jsonb NOT NULL DEFAULT '{}'
);

-- Status callbacks: written in the transaction of the status change, delivered by a job.
CREATE TABLE callbacks (
    id              bigserial PRIMARY KEY,
    order_id        uuid NOT NULL REFERENCES orders (id),
    integration_id  text NOT NULL REFERENCES integrations (id),
    url             text NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    given_up_at     timestamptz
);
CREATE INDEX callbacks_due ON callbacks (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE INDEX callbacks_order ON callbacks (order_id, id);

CREATE TABLE callback_attempts (
    id            bigserial PRIMARY KEY,
    callback_id   bigint NOT NULL REFERENCES callbacks (id),
    attempt       integer NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status   integer,
    error         text,
    duration_ms   integer NOT NULL
);
CREATE INDEX callback_attempts_callback ON callback_attempts (callback_id, id);

-- Integrations created before callbacks existed get a secret too.
UPDATE integrations SET callback_secret = encode(sha256(gen_random_uuid()::text::bytea), 'hex')
    WHERE callback_secret IS NULL;
