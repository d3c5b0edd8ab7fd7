-- Every credential can expire, records its last use (at most once a minute), and after a
-- rotation keeps its previous hash working until previous_expires_at (shared/credentials.py).
ALTER TABLE staff
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN last_used_at timestamptz,
    ADD COLUMN previous_hash text UNIQUE,
    ADD COLUMN previous_expires_at timestamptz;
