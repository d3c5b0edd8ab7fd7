-- Scopes for a province: an operator may be bound to a list of stations (a county's, say);
-- they see and act on those stations' orders and figures only. NULL: every station.
ALTER TABLE operators
    ADD COLUMN stations text[] CHECK (stations IS NULL OR cardinality(stations) > 0);
