-- Case details are erased a while after the order ends at the station (closed, cancelled).
ALTER TABLE station_orders ALTER COLUMN case_details DROP NOT NULL;
ALTER TABLE station_orders ADD COLUMN ended_at timestamptz;
ALTER TABLE station_orders ADD COLUMN case_erased_at timestamptz;
CREATE INDEX station_orders_to_erase ON station_orders (ended_at)
    WHERE case_details IS NOT NULL AND ended_at IS NOT NULL;
