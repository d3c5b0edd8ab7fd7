-- The closed loop: the return visit (回访) after a completion, and the send-back for redo.
ALTER TABLE orders
    -- The order closes without feedback then (the durable timer), while it awaits feedback.
    ADD COLUMN feedback_due_at       timestamptz,
    -- This round's answered feedback (reset by the next completion): the first one counts.
    ADD COLUMN feedback_at           timestamptz,
    ADD COLUMN feedback_resolved     boolean,
    ADD COLUMN feedback_satisfaction text,
    -- Send-backs for redo so far, and the last one's reason (a redo dispatch carries both).
    ADD COLUMN send_backs            integer NOT NULL DEFAULT 0,
    ADD COLUMN send_back_reason      text,
    -- When the accept, assign and complete deadlines were counted from: the submission, or
    -- the last send-back (NULL: the submission).
    ADD COLUMN deadlines_from        timestamptz;

CREATE INDEX orders_feedback_due ON orders (feedback_due_at) WHERE feedback_due_at IS NOT NULL;
