-- The dispatch the order was last escalated from, so that its station's accept, when it
-- happened before that dispatch's deadline but arrives after the escalation, still wins.
ALTER TABLE orders
    ADD COLUMN escalated_station_id    text,
    ADD COLUMN escalated_accept_due_at timestamptz;
