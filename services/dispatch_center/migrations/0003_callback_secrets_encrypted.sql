-- Callback secrets are kept encrypted with a key from the environment (SWD_CALLBACK_SECRET_KEY,
-- never in the database). Secrets written in clear before this are encrypted by the center on
-- start, which then empties callback_secret_cleartext.
ALTER TABLE integrations RENAME COLUMN callback_secret TO callback_secret_cleartext;
ALTER TABLE integrations ADD COLUMN callback_secret_encrypted text;

-- Due callbacks by integration: delivery takes a few of each integration's at a time.
CREATE INDEX callbacks_due_by_integration ON callbacks (integration_id, next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
