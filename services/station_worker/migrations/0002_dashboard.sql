-- The dashboard: the deadline each open order is due by next, social workers, live updates.

-- The deadline of the order's current stage; terminal orders sort after every open one.
ALTER TABLE station_orders ADD COLUMN due_at timestamptz GENERATED ALWAYS AS (
    CASE status
        WHEN 'dispatched' THEN accept_by
        WHEN 'accepted' THEN assign_by
        WHEN 'assigned' THEN complete_by
        WHEN 'in_service' THEN complete_by
        ELSE 'infinity'::timestamptz
    END) STORED;
ALTER TABLE station_orders ADD COLUMN correlation_id text;
DROP INDEX station_orders_queue;
CREATE INDEX station_orders_queue ON station_orders (station_id, due_at, order_id);
CREATE INDEX station_orders_status_queue ON station_orders (station_id, status, due_at, order_id);
CREATE INDEX station_orders_worker ON station_orders (station_id, worker_id, due_at, order_id)
    WHERE worker_id IS NOT NULL;

-- A social worker's profile; the id is their staff id, so their token is their identity.
CREATE TABLE workers (
    id          text PRIMARY KEY REFERENCES staff (id),
    station_id  text NOT NULL,
    skills      text[] NOT NULL DEFAULT '{}',
    capacity    integer NOT NULL CHECK (capacity >= 0),
    on_duty     boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_station ON workers (station_id);

-- Every queue change, to the dashboards' streams on every replica. Only ids and the status:
-- no personal data goes through NOTIFY.
CREATE FUNCTION station_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.station_id <> NEW.station_id THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '.queue', json_build_object(
            'station_id', OLD.station_id, 'order_id', OLD.order_id,
            'status', 'withdrawn', 'version', NEW.version)::text);
    END IF;
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.queue', json_build_object(
        'station_id', NEW.station_id, 'order_id', NEW.order_id,
        'status', NEW.status, 'version', NEW.version)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER station_queue_notify AFTER INSERT OR UPDATE ON station_orders
    FOR EACH ROW EXECUTE FUNCTION station_queue_notify();
