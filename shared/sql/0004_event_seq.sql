-- Each producer numbers the events it writes for an order, 1, 2, 3 ... (the envelope's seq), so
-- a consumer can tell that one is missing (the audit's verify names it).
CREATE TABLE event_seq (
    order_id uuid PRIMARY KEY,
    seq      int NOT NULL
);
